"""Run folders are untrusted (shared by teammates, published as Kaggle datasets): nothing read back from one may
run code, a damaged or edited file is exit 2 naming it, and one command at a time writes into a run folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml

from mmtune.config import load_config
from mmtune.errors import InputError
from mmtune.evaluation.report import gather
from mmtune.recipes.predict import predict
from mmtune.recipes.train import train
from mmtune.training.run_folder import LOCK_FILE, locked
from tests.hostile.conftest import assert_one_line_error, fusion_config, run_mmtune, write_config


class _Evil:
    """The issue's payload: unpickling it runs a shell command (here: creates a marker file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Processes:
    is_main_process, num_processes = True, 1


@pytest.fixture(scope="module")
def finished(demo_small, tiny_models, tmp_path_factory):
    """A finished 1-epoch fusion run (best/, last/, metrics.jsonl, val and test predictions)."""
    root = tmp_path_factory.mktemp("finished")
    run_dir = root / "run"
    assert train(load_config(write_config(fusion_config(demo_small, tiny_models, run_dir, epochs=1),
                                          root / "c.yaml"))).stopped == "finished"
    return run_dir


@pytest.fixture
def run(finished, demo_small, tiny_models, tmp_path):
    """A private copy of the finished run and a config that resumes it."""
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    config = write_config(fusion_config(demo_small, tiny_models, run_dir, epochs=1), tmp_path / "c.yaml")
    return run_dir, config


def _cut(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _resume(config, *overrides):
    return train(load_config(config, list(overrides)), resume=True).stopped


def _predict(run_dir, demo, tmp_path):
    return predict(run_dir, demo.test, demo.test_images, tmp_path / "p.csv").path


# ------------------------------------------------------------------------------------ no code from a run folder


def test_a_pickle_payload_in_optimizer_pt_is_refused_without_running(run, tmp_path):
    run_dir, config = run
    marker = tmp_path / "PWNED"
    torch.save({"s": _Evil(marker)}, run_dir / "last" / "optimizer.pt")
    result = run_mmtune("train", config, f"output_dir={run_dir}", "--resume")
    line = assert_one_line_error(result, f"{run_dir / 'last' / 'optimizer.pt'}: not a checkpoint mmtune can load "
                                         "safely")
    assert "Evil" not in line.split("safely", 1)[0]
    assert not marker.exists()


@pytest.mark.parametrize("name", ["scheduler.pt", "optimizer.pt"])
def test_every_torch_state_loads_weights_only(run, tmp_path, name):
    run_dir, config = run
    marker = tmp_path / "PWNED"
    torch.save([_Evil(marker)], run_dir / "last" / name)
    with pytest.raises(InputError, match=f"{run_dir / 'last' / name}: not a checkpoint mmtune can load safely"):
        _resume(config)
    assert not marker.exists()


def test_rng_states_are_written_as_tensors_not_pickles(finished):
    last = finished / "last"
    assert (last / "rng-0.safetensors").exists()
    assert not list(last.glob("rng-*.pt"))


def test_a_valid_but_foreign_state_dict_is_refused(run):
    run_dir, config = run
    torch.save({"state": {}, "param_groups": [], "extra": 1}, run_dir / "last" / "optimizer.pt")
    with pytest.raises(InputError, match=r"last/optimizer.pt: not a saved optimizer state \(keys \['extra'"):
        _resume(config)


def test_a_scheduler_state_with_wrong_value_types_is_refused(run):
    run_dir, config = run
    path = run_dir / "last" / "scheduler.pt"
    state = torch.load(path, weights_only=True)
    torch.save(state | {"last_epoch": "x"}, path)
    with pytest.raises(InputError, match=r"last/scheduler.pt: unexpected value types for last_epoch"):
        _resume(config)


def test_a_damaged_rng_file_is_named(run):
    run_dir, config = run
    _cut(run_dir / "last" / "rng-0.safetensors")
    with pytest.raises(InputError, match=r"last/rng-0.safetensors: damaged or not a safetensors file"):
        _resume(config)


# ---------------------------------------------------------------------------------------- damaged run files


def test_predict_with_best_weights_cut_short_exits_2_naming_the_file(run, demo_small, tmp_path):
    run_dir, _ = run
    _cut(run_dir / "best" / "trainable.safetensors")
    result = run_mmtune("predict", run_dir, demo_small.test, "--images", demo_small.test_images,
                        "--out", tmp_path / "p.csv")
    assert_one_line_error(result, f"{run_dir / 'best' / 'trainable.safetensors'}: damaged or not a safetensors file")
    assert not (tmp_path / "p.csv").exists()


def test_resume_with_last_weights_cut_short_names_the_file(run):
    run_dir, config = run
    _cut(run_dir / "last" / "trainable.safetensors", keep=0.9)
    with pytest.raises(InputError, match=r"last/trainable.safetensors: damaged or not a safetensors file"):
        _resume(config)


def _edit_config(run_dir, section, key, value):
    path = run_dir / "config.yaml"
    data = yaml.safe_load(path.read_text())
    node = data
    for part in section.split("."):
        node = node[part]
    node[key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_predict_after_config_yaml_edited_names_the_weights_that_no_longer_fit(run, demo_small, tmp_path):
    run_dir, _ = run
    _edit_config(run_dir, "model.fusion", "hidden_size", 8)
    with pytest.raises(InputError, match=r"best/trainable.safetensors: tensor shapes do not fit the model built "
                                         r"from the run's config \(.*\[16.*vs \[8"):
        _predict(run_dir, demo_small, tmp_path)


def test_predict_after_labels_reordered_in_config_yaml_is_refused(run, demo_small, tmp_path):
    run_dir, _ = run
    labels = yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["labels"]
    _edit_config(run_dir, "data", "labels", labels[::-1])
    with pytest.raises(InputError, match=r"best/trainable.safetensors: trained for labels .* but the run's "
                                         "config.yaml has"):
        _predict(run_dir, demo_small, tmp_path)


@pytest.mark.parametrize("keep", [0.2, 0.5, 0.9, 0.99])
def test_predict_and_resume_refuse_a_config_yaml_cut_short(run, demo_small, tmp_path, keep):
    run_dir, config = run
    _cut(run_dir / "config.yaml", keep)  # mostly still YAML: the lost keys would silently become defaults
    refused = r"config.yaml: (cut short or not written by mmtune|invalid YAML at line)"
    with pytest.raises(InputError, match=refused):
        _predict(run_dir, demo_small, tmp_path)
    with pytest.raises(InputError, match=refused):
        _resume(config)


def test_an_empty_optimizer_pt_is_named_in_words(run):
    run_dir, config = run
    (run_dir / "last" / "optimizer.pt").write_bytes(b"")
    with pytest.raises(InputError, match=r"last/optimizer.pt: not a checkpoint mmtune can load safely \((the file "
                                         r"ends too early|[^)]*[a-z ]{12})") as caught:
        _resume(config)
    assert "Error" not in str(caught.value)


def test_resume_with_config_and_weights_of_another_size_names_the_weights(run):
    run_dir, config = run
    _edit_config(run_dir, "model.fusion", "hidden_size", 8)  # the user resumes with the same edit: configs agree
    with pytest.raises(InputError, match=r"last/trainable.safetensors: tensor shapes do not fit"):
        _resume(config, "model.fusion.hidden_size=8")


def test_resume_with_trainer_state_cut_short_exits_2_naming_it(run):
    run_dir, config = run
    _cut(run_dir / "last" / "trainer_state.json")
    result = run_mmtune("train", config, "--resume")
    assert_one_line_error(result, f"{run_dir / 'last' / 'trainer_state.json'}: damaged, not JSON")


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s | {"extra": 1}, r"not a trainer state \(keys .*extra"),
    (lambda s: {k: v for k, v in s.items() if k != "epoch"}, r"not a trainer state"),
    (lambda s: s | {"global_step": "12"}, r"invalid values for global_step"),
    (lambda s: s | {"epoch": -1, "finished": 1}, r"invalid values for epoch, finished"),
    (lambda s: [s], r"not a trainer state \(keys list"),
])
def test_resume_with_an_edited_trainer_state_names_it(run, edit, message):
    run_dir, config = run
    path = run_dir / "last" / "trainer_state.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    with pytest.raises(InputError, match=r"last/trainer_state.json: " + message):
        _resume(config)


@pytest.mark.parametrize("damage", ["cut", "shape", "pickle"])
def test_a_damaged_val_probs_npy_is_named(run, tmp_path, damage):
    run_dir, config = run
    path = run_dir / "best" / "val_probs.npy"
    marker = tmp_path / "PWNED"
    if damage == "cut":
        _cut(path)
    elif damage == "shape":
        np.save(path, np.load(path)[:3])
    else:
        np.save(path, np.array([_Evil(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match=r"best/val_probs.npy: (damaged or not a .npy array|expected 24 x 4)"):
        _resume(config)
    assert not marker.exists()


def test_report_names_a_damaged_metrics_line_and_cv_summary(run, tmp_path):
    run_dir, _ = run
    with (run_dir / "metrics.jsonl").open("a") as handle:
        handle.write('{"kind": "epoch", "st\n')
    with pytest.raises(InputError, match=r"metrics.jsonl:2: invalid JSON"):
        gather(run_dir)
    cv_dir = tmp_path / "cv"
    cv_dir.mkdir()
    shutil.copy(run_dir / "val_predictions.csv", cv_dir / "oof.csv")
    (cv_dir / "cv_summary.json").write_text('{"folds": [0, 1], "macro_f1": ')
    with pytest.raises(InputError, match=r"cv_summary.json: invalid JSON"):
        gather(cv_dir)
    (cv_dir / "cv_summary.json").write_text('{"folds": "all"}')
    with pytest.raises(InputError, match=r"cv_summary.json: not a summary written by mmtune cv"):
        gather(cv_dir)


# ------------------------------------------------------------------------------------ output_dir is a file


@pytest.mark.parametrize("command", ["train", "cv"])
def test_output_dir_naming_an_existing_file_exits_2(demo_small, tiny_models, tmp_path, command):
    target = tmp_path / "taken"
    target.write_text("mine")
    config = write_config(fusion_config(demo_small, tiny_models, target), tmp_path / "c.yaml")
    result = run_mmtune(command, config)
    assert_one_line_error(result, "output_dir", str(target), "is a file, not a folder")
    assert target.read_text() == "mine"


def test_output_dir_under_a_file_exits_2(demo_small, tiny_models, tmp_path):
    (tmp_path / "file").write_text("mine")
    config = write_config(fusion_config(demo_small, tiny_models, tmp_path / "file" / "run"), tmp_path / "c.yaml")
    with pytest.raises(InputError, match=r"output_dir: cannot create .*file/run"):
        train(load_config(config))


# ------------------------------------------------------------------------------------------- one at a time


def _wait_for(predicate, process, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, f"exited {process.returncode}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _mmtune_process(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "mmtune", *map(str, args)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_second_train_or_resume_into_a_busy_run_folder_exits_2_naming_the_holder(demo_small, tiny_models,
                                                                                      tmp_path, caplog):
    run_dir = tmp_path / "run"
    config = write_config(fusion_config(demo_small, tiny_models, run_dir, epochs=500), tmp_path / "c.yaml")
    first = _mmtune_process("train", config)
    try:
        _wait_for(lambda: (run_dir / LOCK_FILE).exists() and (run_dir / LOCK_FILE).read_text(), first)
        holder = json.loads((run_dir / LOCK_FILE).read_text())
        assert holder["pid"] == first.pid and holder["host"]
        second = run_mmtune("train", config)
        assert_one_line_error(second, f"output_dir: {run_dir} is in use by another mmtune command "
                                      f"(pid {first.pid} on host {holder['host']}")
        with pytest.raises(InputError, match=f"{run_dir} is in use .*pid {first.pid}"):
            _resume(config)
        assert first.poll() is None  # the holder never noticed
    finally:
        first.kill()  # SIGKILL: no chance to clean up
        first.wait()
    assert json.loads((run_dir / LOCK_FILE).read_text())["pid"] == first.pid  # left behind by the kill
    with caplog.at_level("WARNING"):
        assert _resume(config, "train.time_budget=1s") == "time_budget"
    assert f"taking over the lock left by pid {first.pid}" in caplog.text
    assert not (run_dir / LOCK_FILE).exists()  # released at the end


def test_cv_holds_its_folder_and_train_its_own(demo_small, tiny_models, tmp_path):
    cv_dir = tmp_path / "cv"
    cv_dir.mkdir()
    config = write_config(fusion_config(demo_small, tiny_models, cv_dir), tmp_path / "c.yaml")
    with locked(cv_dir, _Processes()):
        assert_one_line_error(run_mmtune("cv", config), f"output_dir: {cv_dir} is in use", f"pid {os.getpid()}")
        with pytest.raises(InputError, match="is in use by another mmtune command"):
            train(load_config(config))  # a second lock in one process is refused too
    assert not (cv_dir / LOCK_FILE).exists()


def test_the_lock_is_released_when_the_command_fails(demo_small, tiny_models, tmp_path):
    run_dir = tmp_path / "run"
    settings = fusion_config(demo_small, tiny_models, run_dir)
    settings["data"]["labels"] = ["x", "y"]  # every post's label is unknown: found while the lock is held
    config = write_config(settings, tmp_path / "c.yaml")
    with pytest.raises(InputError, match="no usable post"):
        train(load_config(config))
    assert run_dir.is_dir() and not (run_dir / LOCK_FILE).exists()


# ---------------------------------------------------------------------------------- metrics.jsonl on resume


def test_resume_drops_metrics_lines_written_after_the_checkpoint(run):
    run_dir, config = run
    path = run_dir / "metrics.jsonl"
    saved = path.read_text().splitlines()
    assert len(saved) == 1
    # A kill after the next epoch's line but before last/ was saved, and one in the middle of writing a line.
    path.write_text("\n".join([*saved, saved[0].replace('"epoch": 1', '"epoch": 2'), '{"kind": "ep']) + "\n")
    assert _resume(config, "train.epochs=2") == "finished"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2]
    assert lines[0] == json.loads(saved[0])
    assert len({line["step"] for line in lines}) == 2


# ------------------------------------------------------------------------------- named before any other work


def test_a_damaged_last_checkpoint_is_the_only_line_of_resume(run):
    run_dir, config = run
    (run_dir / "last" / "optimizer.pt").write_bytes(b"x")
    result = run_mmtune("train", config, "--resume")
    assert_one_line_error(result, "last/optimizer.pt", "damaged, cut short or not a torch checkpoint")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # before data loading and model building


def test_damaged_best_weights_are_the_only_line_of_predict(run, demo_small, tmp_path):
    run_dir, _ = run
    _cut(run_dir / "best" / "trainable.safetensors")
    result = run_mmtune("predict", run_dir, demo_small.test, "--images", demo_small.test_images,
                        "--out", tmp_path / "p.csv")
    assert_one_line_error(result, "best/trainable.safetensors", "damaged or not a safetensors file")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
