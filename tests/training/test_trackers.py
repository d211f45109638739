"""train.log_with: each run (each cv fold) logs under its own folder's name, the same metrics for train and every fold;
a tracker that is not installed is said once and left out."""

import json
import logging
import sys

import pytest

from mmtune.config import load_config
from mmtune.recipes.cv import run_cv
from mmtune.recipes.train import train
from mmtune.training import trackers
from tests.training.conftest import fusion_config, write_config

# A stand-in for the wandb package (not installed here): it records what mmtune asks of it, as lines of JSON.
FAKE_WANDB = '''
import json, os

run = None


def _write(kind, **data):
    with open(os.environ["FAKE_WANDB_LOG"], "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"kind": kind, **data}, default=str) + "\\n")


class _Config(dict):
    def update(self, values, allow_val_change=False):
        _write("config", keys=sorted(values))


config = _Config()


class _Run:
    id = name = url = "fake"
    summary = {}

    def log(self, values, step=None, **kwargs):
        _write("log", keys=sorted(values), step=step)

    def finish(self):
        global run
        _write("finish")
        run = None

    def _label(self, **kwargs):
        """transformers tags the run with its integration name: nothing the test checks."""


def init(**kwargs):
    global run
    _write("init", **kwargs)
    run = _Run()
    return run


def log(values, step=None, **kwargs):
    run.log(values, step=step)


def finish():
    if run is not None:
        run.finish()


def termwarn(*args, **kwargs):
    """W&B's console warnings: not what the test checks."""
'''


@pytest.fixture
def fake_wandb(tmp_path, monkeypatch):
    """An installed `wandb` distribution (module + dist-info) whose calls land in the returned file."""
    site = tmp_path / "site"
    (site / "wandb").mkdir(parents=True)
    (site / "wandb" / "__init__.py").write_text(FAKE_WANDB, encoding="utf-8")
    (site / "wandb" / "sdk" / "lib").mkdir(parents=True)  # transformers' W&B callback imports ConfigError there
    (site / "wandb" / "sdk" / "__init__.py").write_text("")
    (site / "wandb" / "sdk" / "lib" / "__init__.py").write_text("")
    (site / "wandb" / "sdk" / "lib" / "config_util.py").write_text("class ConfigError(Exception):\n    pass\n")
    (site / "wandb-0.0.0.dist-info").mkdir()
    (site / "wandb-0.0.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: wandb\nVersion: 0.0.0\n")
    calls = tmp_path / "wandb_calls.jsonl"
    monkeypatch.setenv("FAKE_WANDB_LOG", str(calls))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "wandb", raising=False)
    yield calls
    for name in [name for name in sys.modules if name == "wandb" or name.startswith("wandb.")]:
        del sys.modules[name]


def wandb_calls(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def cv_config(demo, tiny, tmp_path, log_with):
    config = fusion_config(demo, tiny, tmp_path / "mycv", epochs=1, log_with=log_with, log_every_steps=2)
    config["cv"] = {"folds": 2}
    return load_config(write_config(config, tmp_path / "cv.yaml"))


def scalar_tags(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    [events] = folder.glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events)).Reload()
    return {tag: [event.step for event in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def test_every_cv_fold_logs_its_own_run_with_the_metrics_a_train_run_logs(demo_small, tiny_models, tmp_path,
                                                                           fake_wandb):
    pytest.importorskip("tensorboard")
    result = run_cv(cv_config(demo_small, tiny_models, tmp_path, ["tensorboard", "wandb"]))
    assert result.complete
    one = fusion_config(demo_small, tiny_models, tmp_path / "single", epochs=1, log_with=["tensorboard"],
                        log_every_steps=2)
    train(load_config(write_config(one, tmp_path / "one.yaml")))
    single = scalar_tags(tmp_path / "single")
    assert {"train/loss", "train/lr", "val/macro_f1", "val/train_loss"} <= set(single)
    for k in (0, 1):
        fold = scalar_tags(result.cv_dir / f"fold-{k}")
        assert set(fold) == set(single)  # the same metrics as train, in each fold's own folder
        assert len(fold["val/macro_f1"]) == 1  # one epoch, one evaluation
    assert not list((result.cv_dir).glob("events.out.tfevents.*"))  # no run of the cv folder itself
    calls = wandb_calls(fake_wandb)
    inits = [call for call in calls if call["kind"] == "init"]
    # W&B: one run per fold, named <cv folder>/fold-K (not the config's name, "tiny"), its files in the fold's folder.
    assert [(call["name"], call["dir"], call["project"]) for call in inits] == [
        (f"mycv/fold-{k}", str((result.cv_dir / f"fold-{k}").resolve()), "mmtune") for k in (0, 1)]
    logged = {key for call in calls if call["kind"] == "log" for key in call["keys"]}
    assert {"train/loss", "train/lr", "val/macro_f1"} <= logged
    assert sum(call["kind"] == "finish" for call in calls) == 2
    assert any("train.lr" in call["keys"] for call in calls if call["kind"] == "config")


def test_a_missing_tracker_is_said_once_naming_the_package_and_the_extra(demo_small, tiny_models, tmp_path,
                                                                        monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed: find_spec finds nothing
    monkeypatch.setattr(trackers, "_said_missing", set())
    with caplog.at_level(logging.WARNING, logger="mmtune.training.trackers"):
        result = run_cv(cv_config(demo_small, tiny_models, tmp_path, ["tensorboard"]))
    assert result.complete  # the runs go on without it
    said = [r.getMessage() for r in caplog.records if r.name == "mmtune.training.trackers"]
    assert len(said) == 1, said  # two folds, said once
    assert "tensorboard is not installed" in said[0] and "mmtune[log]" in said[0]
    assert not list(result.cv_dir.rglob("events.out.tfevents.*"))


def test_wandb_project_comes_from_the_environment_and_the_run_from_its_folder(demo_small, tiny_models, tmp_path,
                                                                             fake_wandb, monkeypatch):
    monkeypatch.setenv("WANDB_PROJECT", "sarcasm")
    config = fusion_config(demo_small, tiny_models, tmp_path / "runs" / "lr-3e-3", epochs=1, log_with=["wandb"])
    train(load_config(write_config(config, tmp_path / "c.yaml")))
    [init] = [call for call in wandb_calls(fake_wandb) if call["kind"] == "init"]
    assert (init["project"], init["name"]) == ("sarcasm", "lr-3e-3")
    assert init["dir"] == str((tmp_path / "runs" / "lr-3e-3").resolve())
