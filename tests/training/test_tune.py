"""`mmtune tune`: an Optuna study over tune.space on tiny data; resumable, shared by processes via one SQLite."""

import csv
import subprocess
import sys
import time

import optuna
import pytest

from mmtune.config import load_config
from mmtune.errors import InputError
from mmtune.recipes.tune import tune
from tests.training.conftest import fusion_config, run_mmtune, write_config

SPACE = {"train.head_lr": "float(1e-3, 1e-2, log)", "model.fusion.dropout": "choice(0.0, 0.3)"}


def tune_config(demo, tiny_models, tmp_path, **tune_keys):
    config = fusion_config(demo, tiny_models, tmp_path / "tune", epochs=2)
    config["tune"] = {"space": SPACE, "trials": 2, "folds": 1} | tune_keys
    return write_config(config, tmp_path / "tune.yaml")


def finished(out):
    study = optuna.load_study(study_name="mmtune", storage=f"sqlite:///{out / 'study.db'}")
    return [t for t in study.get_trials() if t.state.name in ("COMPLETE", "PRUNED")]


def test_tune_writes_the_trials_and_a_ready_best_config(demo_small, tiny_models, tmp_path):
    path = tune_config(demo_small, tiny_models, tmp_path)
    result = tune(path, [])
    out = tmp_path / "tune"
    rows = list(csv.DictReader((out / "trials.csv").open(encoding="utf-8")))
    assert [r["state"] for r in rows] == ["COMPLETE", "COMPLETE"] and result.finished == 2
    assert all(1e-3 <= float(r["train.head_lr"]) <= 1e-2 and r["model.fusion.dropout"] in ("0.0", "0.3")
               for r in rows)
    best_row = max(rows, key=lambda r: float(r["macro_f1"]))
    assert result.best_value == pytest.approx(float(best_row["macro_f1"]))
    best = load_config(result.best_config)
    assert best.train.head_lr == pytest.approx(float(best_row["train.head_lr"]))
    assert best.model.fusion.dropout == float(best_row["model.fusion.dropout"])
    # Every trial trained fold 0 of the one shared split.
    for row in rows:
        assert (out / "trials" / f"trial-{row['trial']}" / "fold-0" / "best" / "metrics.json").exists()
    # Started again with a larger tune.trials, it continues the same study.
    again = tune(path, ["tune.trials=3"])
    assert again.finished == 3 and [t.number for t in finished(out)] == [0, 1, 2]


@pytest.mark.parametrize("space, message", [
    ({"train.head_lr": "uniform(0, 1)"}, "'tune.space' train.head_lr: 'uniform(0, 1)' is not float"),
    ({"train.head_lr": "float(1e-2, 1e-3)"}, "needs low < high"),
    ({"train.head_lr": "float(0, 1, log)"}, "low > 0 with log"),
    ({"train.no_such_key": "float(0, 1)"}, "no_such_key"),
    ({"train.loss": "choice(ce, nope)"}, "nope"),
])
def test_a_bad_space_is_one_line_before_any_trial(demo_small, tiny_models, tmp_path, space, message):
    path = tune_config(demo_small, tiny_models, tmp_path, space=space)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        tune(path, [])
    assert not (tmp_path / "tune" / "study.db").exists()


@pytest.mark.slow
def test_a_killed_study_continues_and_two_processes_share_one(demo_small, tiny_models, tmp_path):
    path = tune_config(demo_small, tiny_models, tmp_path, trials=4)
    out = tmp_path / "tune"
    first = subprocess.Popen([sys.executable, "-m", "mmtune", "tune", str(path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and first.poll() is None:
        if (out / "study.db").exists() and finished(out):
            break
        time.sleep(0.2)
    first.kill()  # mid-study: one trial finished, the next one running
    first.wait()
    done_before = finished(out)
    assert 1 <= len(done_before) < 4
    second = subprocess.Popen([sys.executable, "-m", "mmtune", "tune", str(path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    third = run_mmtune("tune", path)
    assert second.wait(timeout=300) == 0 and third.returncode == 0, third.stderr
    done = finished(out)
    assert len(done) >= 4
    assert {t.number for t in done_before} <= {t.number for t in done}  # the killed run's trials count
    workers = {t.user_attrs["worker"] for t in done if t.number not in {d.number for d in done_before}}
    assert len(workers) == 2  # both processes added trials to the one study


def test_the_command_names_a_bad_space_in_one_line(demo_small, tiny_models, tmp_path):
    path = tune_config(demo_small, tiny_models, tmp_path, space={"train.head_lr": "float(1, 0)"})
    done = run_mmtune("tune", path, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmtune: error: ") and "train.head_lr" in lines[0], done.stderr
