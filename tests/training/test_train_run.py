import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mmtune.config import load_config
from mmtune.errors import InputError
from mmtune.recipes.train import build_model, train
from mmtune.training import loop as loop_module
from mmtune.training.loop import make_accelerator
from tests.training.conftest import fusion_config, run_mmtune, train_then_sigkill, write_config


def read_csv(path):
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def metrics_lines(run_dir):
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for line in lines:
        line.pop("elapsed_s")
    return lines


def test_train_writes_the_run_folder(demo_small, tiny_models, tmp_path):
    run_dir = tmp_path / "run"
    path = write_config(fusion_config(demo_small, tiny_models, run_dir), tmp_path / "c.yaml")
    assert train(load_config(path)).stopped == "finished"
    saved = load_config(run_dir / "config.yaml")
    assert saved.data.labels == sorted(saved.data.labels) and len(saved.data.labels) == 4
    assert len(metrics_lines(run_dir)) == 2
    assert (run_dir / "best" / "trainable.safetensors").exists() and (run_dir / "last" / "optimizer.pt").exists()
    assert (run_dir / "learning_curve.png").stat().st_size > 1000
    folds = read_csv(run_dir / "folds.csv")
    val_ids = {row["id"] for row in folds if row["fold"] == "0"}
    val = read_csv(run_dir / "val_predictions.csv")
    assert {row["id"] for row in val} == val_ids and len(val) == len(val_ids)
    test = read_csv(run_dir / "test_predictions.csv")
    assert len(test) == 24
    for row in val + test:
        probs = [float(v) for k, v in row.items() if k.startswith("p_")]
        assert abs(sum(probs) - 1) < 1e-4 and row["label"] in saved.data.labels
    assert all(row["gold"] in saved.data.labels for row in val)


def test_training_lowers_the_loss(demo_small, tiny_models, tmp_path):
    config = fusion_config(demo_small, tiny_models, tmp_path / "run", epochs=6, warmup_ratio=0.0)
    train(load_config(write_config(config, tmp_path / "c.yaml")))
    losses = [line["train_loss"] for line in metrics_lines(tmp_path / "run")]
    assert losses[-1] < losses[0] * 0.9, losses


def _weights(run_dir):
    return load_file(str(run_dir / "last" / "trainable.safetensors"))


def _assert_same_run(a, b):
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        np.testing.assert_allclose(wa[name].numpy(), wb[name].numpy(), atol=1e-6, err_msg=name)
    assert metrics_lines(a) == metrics_lines(b)


def test_sigkill_then_resume_equals_an_uninterrupted_run(demo_small, tiny_models, tmp_path):
    # Accumulation over 2 batches: 9 optimizer steps per epoch, checkpoints every 2 steps.
    settings = {"epochs": 3, "batch_size": 4, "grad_accum": 2, "save_every_steps": 2}
    straight = write_config(fusion_config(demo_small, tiny_models, tmp_path / "straight", **settings),
                            tmp_path / "a.yaml")
    assert run_mmtune("train", straight).returncode == 0
    killed_dir = tmp_path / "killed"
    killed = write_config(fusion_config(demo_small, tiny_models, killed_dir, **settings), tmp_path / "b.yaml")
    train_then_sigkill(killed, killed_dir, at_step=12)  # mid-epoch 2 of 3
    resumed = run_mmtune("train", killed, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr
    _assert_same_run(tmp_path / "straight", killed_dir)


def _head_only_config(demo, tiny_models, out, tmp_path, **train):
    """Frozen towers on cached features, one process, no accumulation: the loop's direct steps."""
    config = fusion_config(demo, tiny_models, out, feature_cache=True, cache_dir=str(tmp_path / "cache"), **train)
    config["model"]["freeze"] = {"preset": "all"}
    return config


def test_sigkill_then_resume_equals_an_uninterrupted_run_with_direct_steps(demo_small, tiny_models, tmp_path):
    settings = {"epochs": 3, "batch_size": 4, "save_every_steps": 4}  # 18 optimizer steps per epoch
    straight = write_config(_head_only_config(demo_small, tiny_models, tmp_path / "straight", tmp_path, **settings),
                            tmp_path / "a.yaml")
    assert run_mmtune("train", straight).returncode == 0
    killed_dir = tmp_path / "killed"
    killed = write_config(_head_only_config(demo_small, tiny_models, killed_dir, tmp_path, **settings),
                          tmp_path / "b.yaml")
    train_then_sigkill(killed, killed_dir, at_step=24)  # mid-epoch 2 of 3
    resumed = run_mmtune("train", killed, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr
    _assert_same_run(tmp_path / "straight", killed_dir)


def test_direct_steps_with_one_process_and_no_accumulation():
    accelerator = make_accelerator(load_config(None, ["train.log_with=[]"]), Path("unused"))
    assert loop_module.direct_steps(accelerator, 1) and not loop_module.direct_steps(accelerator, 2)


def test_direct_steps_train_exactly_as_accelerates_wrappers(demo_small, tiny_models, tmp_path, monkeypatch):
    for name, direct in (("direct", True), ("wrapped", False)):
        monkeypatch.setattr(loop_module, "direct_steps", lambda accelerator, grad_accum, direct=direct: direct)
        config = _head_only_config(demo_small, tiny_models, tmp_path / name, tmp_path, epochs=2, max_grad_norm=0.05)
        assert train(load_config(write_config(config, tmp_path / f"{name}.yaml"))).stopped == "finished"
    wa, wb = _weights(tmp_path / "direct"), _weights(tmp_path / "wrapped")
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[name], wb[name]) for name in wa)
    assert metrics_lines(tmp_path / "direct") == metrics_lines(tmp_path / "wrapped")


def test_time_budget_stops_early_with_a_resumable_checkpoint(demo_small, tiny_models, tmp_path):
    run_dir = tmp_path / "run"
    config = write_config(fusion_config(demo_small, tiny_models, run_dir, epochs=200, time_budget="4s"),
                          tmp_path / "c.yaml")
    started = time.monotonic()
    result = run_mmtune("train", config)
    assert result.returncode == 0, result.stderr
    assert "stopped (time_budget)" in result.stdout and "--resume" in result.stdout
    state = json.loads((run_dir / "last" / "trainer_state.json").read_text())
    assert not state["finished"] and 0 < state["global_step"] < 200 * 18
    assert time.monotonic() - started < 60
    more = run_mmtune("train", config, "train.time_budget=3s", "--resume")
    assert more.returncode == 0, more.stderr
    after = json.loads((run_dir / "last" / "trainer_state.json").read_text())
    assert after["global_step"] > state["global_step"]


def test_sigterm_saves_and_exits_cleanly(demo_small, tiny_models, tmp_path):
    run_dir = tmp_path / "run"
    config = write_config(fusion_config(demo_small, tiny_models, run_dir, epochs=200), tmp_path / "c.yaml")
    process = subprocess.Popen([sys.executable, "-m", "mmtune", "train", str(config)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run_dir / "metrics.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "stopped (signal)" in out
    assert json.loads((run_dir / "last" / "trainer_state.json").read_text())["finished"] is False


def test_resume_with_a_changed_config_names_the_keys(demo_small, tiny_models, tmp_path):
    run_dir = tmp_path / "run"
    config = write_config(fusion_config(demo_small, tiny_models, run_dir, epochs=1), tmp_path / "c.yaml")
    assert run_mmtune("train", config).returncode == 0
    again = run_mmtune("train", config)
    assert again.returncode == 2 and "already holds a run" in again.stderr
    changed = run_mmtune("train", config, "--resume", "train.lr=0.5", "model.fusion.hidden_size=8", "train.epochs=2")
    assert changed.returncode == 2
    line = changed.stderr.strip()
    assert "model.fusion.hidden_size: 16 -> 8" in line and "train.lr: 0.001 -> 0.5" in line
    assert "train.epochs" not in line


@pytest.mark.parametrize(
    ("override", "message"),
    [("model.kind=bogus", "model.kind: unknown kind 'bogus'"),
     ("train.loss=hinge", "'train.loss' must be one of"),
     ("train.epochs=many", "'train.epochs' must be a whole number, got text 'many'"),
     ("train.lrr=1", "unknown key 'train.lrr'")],
)
def test_bad_training_configs_exit_2_naming_the_key(demo_small, tiny_models, tmp_path, override, message):
    config = write_config(fusion_config(demo_small, tiny_models, tmp_path / "run"), tmp_path / "c.yaml")
    result = run_mmtune("train", config, override)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_labels_the_objective_cannot_use_stop_before_a_model_is_built():
    cfg = load_config(None, ["train.loss=bits", "model.kind=never-looked-up"])
    with pytest.raises(InputError, match=r"^train\.loss=bits needs the 4 sarcasm labels .* got \['a', 'b'\]$"):
        build_model(cfg, ["a", "b"])


def test_predict_writes_the_csv_contract(demo_small, tiny_models, tmp_path):
    run_dir = tmp_path / "run"
    train(load_config(write_config(fusion_config(demo_small, tiny_models, run_dir, epochs=1), tmp_path / "c.yaml")))
    out = tmp_path / "pred.csv"
    result = run_mmtune("predict", run_dir, demo_small.test, "--images", demo_small.test_images, "--out", out,
                        "--tta-flip")
    assert result.returncode == 0, result.stderr
    rows = read_csv(out)
    assert len(rows) == 24 and list(rows[0])[:2] == ["id", "label"]
    assert all(abs(sum(float(v) for k, v in r.items() if k.startswith("p_")) - 1) < 1e-4 for r in rows)


def test_automatic_batch_size_is_written_into_the_run_config(demo_small, tiny_models, tmp_path):
    run_dir = tmp_path / "run"
    config = fusion_config(demo_small, tiny_models, run_dir, epochs=1, batch_size=0, effective_batch_size=16)
    requested = load_config(write_config(config, tmp_path / "c.yaml"))
    run = train(requested)
    assert run.stopped == "finished"
    saved = load_config(run_dir / "config.yaml")
    assert saved.train.batch_size * saved.train.grad_accum == 16 and saved.train.batch_size > 0
    # The run returns what it resolved (the config.yaml it wrote); the caller's config still leaves it open.
    assert run.config == saved
    assert requested.train.batch_size == 0 and requested.data.labels is None
    # Resuming with batch_size 0 again keeps what was found, instead of calling it a changed config.
    again = run_mmtune("train", tmp_path / "c.yaml", "--resume", "train.epochs=2")
    assert again.returncode == 0, again.stderr
