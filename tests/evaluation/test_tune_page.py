"""The page of a tune folder: trial table, optimisation history, parameter importances; self-contained, escaped,
loaded in headless Chromium with every figure decoded and nothing on the console."""

import re
import shutil
import subprocess

import optuna
import pytest

from mmtune.config import load_config, save_config
from mmtune.errors import InputError
from mmtune.evaluation.tune_page import TrialRow, TunePage, write_tune_page
from mmtune.recipes.tune import tune
from mmtune.recipes.tune_page import importances, report_tune_folder
from tests.evaluation.test_report import body_attributes, chromium
from tests.hostile.conftest import assert_one_line_error
from tests.training.conftest import demo_small, fusion_config, run_mmtune, tiny_models, write_config  # noqa: F401

SPACE = {"train.head_lr": "float(1e-3, 1e-2, log)", "model.fusion.dropout": "choice(0.0, 0.3)"}
HOSTILE = "<script>alert(1)</script> $\\foo$ &amp;"


def make_tune_folder(folder, values=(0.61, None, 0.74, 0.58, 0.70)):
    """A tune folder as `mmtune tune` leaves it (tune-config.yaml, study.db), its trials made without training:
    None = a pruned trial."""
    folder.mkdir(parents=True)
    config = write_config({"output_dir": str(folder), "tune": {"space": SPACE}}, folder.parent / "tune.yaml")
    save_config(load_config(config), folder / "tune-config.yaml")
    study = optuna.create_study(study_name="mmtune", storage=f"sqlite:///{folder / 'study.db'}",
                                direction="maximize")
    distributions = {"train.head_lr": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True),
                     "model.fusion.dropout": optuna.distributions.CategoricalDistribution(["0.0", "0.3"])}
    for k, value in enumerate(values):
        steps = {step: (value or 0.3) - 0.1 / (step + 1) for step in range(3 if value else 2)}
        study.add_trial(optuna.trial.create_trial(
            params={"train.head_lr": 0.001 * (k + 1), "model.fusion.dropout": ["0.0", "0.3"][k % 2]},
            distributions=distributions, value=value, intermediate_values=steps, user_attrs={"worker": f"host:{k}"},
            state=optuna.trial.TrialState.COMPLETE if value else optuna.trial.TrialState.PRUNED))
    return folder


@pytest.fixture(scope="module")
def tune_dir(tmp_path_factory):
    folder = make_tune_folder(tmp_path_factory.mktemp("tune-page") / "tune")
    report_tune_folder(folder)
    return folder


def load_in_chromium(html_path, tmp_path) -> tuple[str, list[str]]:
    """The page's DOM after its scripts ran, and every line it wrote to the browser console."""
    result = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--dump-dom",
         html_path.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout, [line for line in result.stderr.splitlines() if ":CONSOLE" in line]


def test_the_page_shows_the_trials_history_and_importances(tune_dir, tmp_path):
    page = tune_dir / "report.html"
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["']https?:""", text)  # self-contained: nothing fetched
    for title in ("optimisation history", "parameter importances"):
        assert f"<h2>{title}</h2>" in text
    importance_table = text.split('<table id="importances">')[1].split("</table>")[0]
    assert all(f"<td>{key}</td>" in importance_table for key in SPACE)
    assert "Best: trial 2, macro_f1 <b>0.7400</b>" in text and "4 complete, 1 pruned" in text
    dom, console = load_in_chromium(page, tmp_path)
    seen = body_attributes(dom)
    assert console == []
    assert seen["ready"] == "yes" and seen["images-total"] == seen["images-loaded"] == "2"
    assert seen["trial-rows"] == "5"
    assert dom.count('<tr class="best">') == 1 and "host:4" in dom


@pytest.mark.slow
def test_tune_writes_the_page_at_its_end(demo_small, tiny_models, tmp_path):  # noqa: F811
    config = fusion_config(demo_small, tiny_models, tmp_path / "tune", epochs=2)
    config["tune"] = {"space": SPACE, "trials": 2, "folds": 1, "pruning": False}
    result = tune(write_config(config, tmp_path / "tune.yaml"), [])
    text = (result.out / "report.html").read_text(encoding="utf-8")
    assert "<h2>optimisation history</h2>" in text and str(result.best_config) in text
    assert text.count('<td class="number">') == 2 * 4  # trial, value, last reported, seconds per trial
    # A constant objective (tiny towers often score alike) has no importances: the page says why.
    assert "<h2>parameter importances</h2>" in text


def test_report_of_a_tune_folder_from_the_cli(tune_dir, tmp_path):
    result = run_mmtune("report", tune_dir, "--out", tmp_path / "tune.html")
    assert result.returncode == 0, result.stderr
    assert "<h2>optimisation history</h2>" in (tmp_path / "tune.html").read_text(encoding="utf-8")
    assert_one_line_error(run_mmtune("report", tune_dir, "--out", tune_dir / "study.db"), "study.db", "--out")


def test_a_damaged_study_is_one_line(tune_dir, tmp_path):
    folder = tmp_path / "copy"
    folder.mkdir()
    shutil.copy(tune_dir / "tune-config.yaml", folder / "tune-config.yaml")
    with pytest.raises(InputError, match="study.db: not found"):
        report_tune_folder(folder)
    shutil.copy(tune_dir / "study.db", folder / "study.db")
    config = (folder / "tune-config.yaml").read_text(encoding="utf-8")
    (folder / "tune-config.yaml").write_text(config.replace("study: mmtune", "study: other"), encoding="utf-8")
    with pytest.raises(InputError, match="holds no study 'other'"):
        report_tune_folder(folder)
    (folder / "study.db").write_bytes(b"not a database" * 100)
    assert_one_line_error(run_mmtune("report", folder), "study.db", "cannot read the Optuna study")


def test_names_from_a_shared_study_stay_text(tmp_path):
    """A shared study's trials come from other machines: a worker name or a value is never markup or mathtext."""
    trials = [TrialRow(number=k, state=state, value=value, last_reported=value or 0.4, seconds=1.5, worker=HOSTILE,
                       params={HOSTILE: HOSTILE, "train.head_lr": 0.001 * (k + 1)})
              for k, (state, value) in enumerate([("COMPLETE", 0.5), ("PRUNED", None), ("COMPLETE", 0.7)])]
    page = TunePage(title=HOSTILE, metric="macro_f1", maximize=True, keys=[HOSTILE, "train.head_lr"], trials=trials,
                    importances={HOSTILE: 0.75, "train.head_lr": 0.25}, best_config=HOSTILE)
    path = write_tune_page(page, tmp_path / "page.html")
    text = path.read_text(encoding="utf-8")
    assert "<script>alert" not in text and text.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 5
    dom, console = load_in_chromium(path, tmp_path)
    seen = body_attributes(dom)
    assert console == []
    assert seen["images-total"] == seen["images-loaded"] == "2" and seen["trial-rows"] == "3"
    assert "Best: trial 2" in dom


def test_importances_need_two_complete_trials():
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    objective = lambda trial: trial.suggest_float("x", 0, 1) + 0.01 * trial.suggest_float("y", 0, 1)  # noqa: E731
    study.optimize(objective, n_trials=1)
    assert importances(study) == ({}, "parameter importances need 2 complete trials; the study has 1")
    study.optimize(objective, n_trials=11)
    values, note = importances(study)
    assert note is None and set(values) == {"x", "y"} and values["x"] > values["y"]
    assert sum(values.values()) == pytest.approx(1.0)


def test_a_database_password_never_reaches_the_tune_folder(tmp_path, monkeypatch):
    import optuna

    from mmtune.config import load_config, save_config
    from mmtune.recipes.tune_page import STORAGE_ENV, config_to_write, load_study

    cfg = load_config(None, ["tune.storage=postgresql://ann:s3cret@db.example/studies"])
    written = config_to_write(cfg)
    assert written.tune.storage == "postgresql://ann:***@db.example/studies"
    save_config(written, tmp_path / "tune-config.yaml")
    assert "s3cret" not in (tmp_path / "tune-config.yaml").read_text(encoding="utf-8")
    with pytest.raises(InputError, match=STORAGE_ENV):
        load_study(written, tmp_path)
    # The full URL from the environment opens the study (a SQLite file stands in for the server here).
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    optuna.create_study(study_name=cfg.tune.study, storage=url)
    monkeypatch.setenv(STORAGE_ENV, url)
    assert load_study(written, tmp_path).study_name == cfg.tune.study
