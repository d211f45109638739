"""The VLM kinds through `mmtune train`: run folder, lm objective, exact resume, predict, shipped recipes."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from mmtune.config import load_config
from mmtune.recipes.predict import predict
from mmtune.recipes.train import train
from tests.training.conftest import run_mmtune, train_then_sigkill, write_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def vlm_run_config(demo, model_dir: Path, out: Path, kind: str = "vlm-generative", model: dict | None = None,
                   **train_settings) -> dict:
    return {
        "name": "tiny-vlm", "output_dir": str(out), "seed": 5,
        "data": {"train": str(demo.train), "train_images": str(demo.train_images),
                 "test": str(demo.test), "test_images": str(demo.test_images)},
        "model": {"kind": kind, "name": str(model_dir),
                  "lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0},
                  "vlm": {"prompt": "vi_short", "image_size": 32, "hidden_size": 16}} | (model or {}),
        "train": {"epochs": 2, "batch_size": 4, "lr": 5e-3, "head_lr": 5e-3, "warmup_ratio": 0.0,
                  "schedule": "constant", "feature_cache": False, "log_with": []} | train_settings,
        "cv": {"folds": 4},
    }


def rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def metrics(run_dir: Path) -> list[dict]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if k != "elapsed_s"} for line in lines]


def same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a / "last" / "trainable.safetensors")), load_file(str(b / "last" / "trainable.safetensors"))
    assert wa.keys() == wb.keys() and wa
    for name in wa:
        np.testing.assert_allclose(wa[name].numpy(), wb[name].numpy(), atol=1e-6, err_msg=name)


def assert_probabilities(path: Path, count: int) -> None:
    table = rows(path)
    assert len(table) == count
    for row in table:
        assert abs(sum(float(v) for k, v in row.items() if k.startswith("p_")) - 1) < 1e-4


@pytest.mark.parametrize(("family", "kind"), [("qwen2-vl", "vlm-generative"), ("idefics3", "vlm-head")])
def test_a_lora_run_resumes_exactly_at_an_epoch_boundary(family, kind, tiny_vlm, vlm_demo, tmp_path):
    straight = vlm_run_config(vlm_demo, tiny_vlm(family), tmp_path / "straight", kind)
    assert train(load_config(write_config(straight, tmp_path / "a.yaml"))).stopped == "finished"
    assert_probabilities(tmp_path / "straight" / "test_predictions.csv", 8)
    assert metrics(tmp_path / "straight")[-1]["macro_f1"] >= 0
    split = vlm_run_config(vlm_demo, tiny_vlm(family), tmp_path / "split", kind, epochs=1)
    path = write_config(split, tmp_path / "b.yaml")
    assert train(load_config(path)).stopped == "finished"
    assert train(load_config(path, ["train.epochs=2"]), resume=True).stopped == "finished"
    same_weights(tmp_path / "straight", tmp_path / "split")
    assert metrics(tmp_path / "straight") == metrics(tmp_path / "split")


def test_lm_objective_run_lowers_its_loss_and_predicts(tiny_vlm, vlm_demo, tmp_path):
    config = vlm_run_config(vlm_demo, tiny_vlm("internvl"), tmp_path / "run",
                            model={"vlm": {"prompt": "vi_short", "image_size": 32, "objective": "lm"}}, epochs=3)
    assert train(load_config(write_config(config, tmp_path / "c.yaml"))).stopped == "finished"
    losses = [line["train_loss"] for line in metrics(tmp_path / "run")]
    assert losses[-1] < losses[0], losses
    assert_probabilities(tmp_path / "run" / "val_predictions.csv", len(rows(tmp_path / "run" / "val_predictions.csv")))
    out = predict(tmp_path / "run", vlm_demo.test, vlm_demo.test_images, tmp_path / "pred.csv").path
    assert rows(out) == rows(tmp_path / "run" / "test_predictions.csv")


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(tiny_vlm, vlm_demo, tmp_path):
    settings = {"epochs": 2, "batch_size": 2, "save_every_steps": 2}
    straight = write_config(vlm_run_config(vlm_demo, tiny_vlm("smolvlm"), tmp_path / "straight", **settings),
                            tmp_path / "a.yaml")
    assert run_mmtune("train", straight).returncode == 0
    killed_dir = tmp_path / "killed"
    killed = write_config(vlm_run_config(vlm_demo, tiny_vlm("smolvlm"), killed_dir, **settings), tmp_path / "b.yaml")
    # About 15 optimizer steps per epoch (29 training posts, batch 2): killed in the first epoch's second half.
    train_then_sigkill(killed, killed_dir, at_step=10, timeout=300)
    resumed = run_mmtune("train", killed, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    same_weights(tmp_path / "straight", killed_dir)
    assert metrics(tmp_path / "straight") == metrics(killed_dir)


RECIPES = {"vintern-1b-lora-t4.yaml": "internvl", "qwen2-vl-2b-qlora.yaml": "qwen2-vl", "smolvlm-head.yaml": "smolvlm"}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_trains_on_a_tiny_model_of_its_family(name, tiny_vlm, vlm_demo, tmp_path):
    overrides = [
        f"output_dir={tmp_path / 'run'}", f"model.name={tiny_vlm(RECIPES[name])}",
        f"data.train={vlm_demo.train}", f"data.train_images={vlm_demo.train_images}",
        f"data.test={vlm_demo.test}", f"data.test_images={vlm_demo.test_images}",
        "train.epochs=1", "train.batch_size=4", "train.grad_accum=1", "train.time_budget=null",
        "model.vlm.image_size=32", "train.log_with=[]",
    ]
    cfg = load_config(CONFIGS / name, overrides)
    assert train(cfg).stopped in ("finished", "early_stopping")
    assert_probabilities(tmp_path / "run" / "test_predictions.csv", 8)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["vlm-generative", "vlm-head"])
def test_two_process_ddp_trains_and_predicts_every_post_once(kind, tiny_vlm, vlm_demo, tmp_path):
    run_dir = tmp_path / "run"
    config = write_config(vlm_run_config(vlm_demo, tiny_vlm("qwen2-vl"), run_dir, kind, epochs=1, batch_size=3),
                          tmp_path / "c.yaml")
    torchrun = Path(sys.executable).parent / "torchrun"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([str(torchrun), "--nproc_per_node", "2", "-m", "mmtune", "train", str(config)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    val_ids = [row["id"] for row in rows(run_dir / "folds.csv") if row["fold"] == "0"]
    assert sorted(row["id"] for row in rows(run_dir / "val_predictions.csv")) == sorted(val_ids)
    assert_probabilities(run_dir / "test_predictions.csv", 8)


def test_time_budget_stops_a_vlm_run_with_a_resumable_checkpoint(tiny_vlm, vlm_demo, tmp_path):
    run_dir = tmp_path / "run"
    config = vlm_run_config(vlm_demo, tiny_vlm("llava"), run_dir, epochs=50, time_budget="2s")
    path = write_config(config, tmp_path / "c.yaml")
    assert train(load_config(path)).stopped == "time_budget"
    state = json.loads((run_dir / "last" / "trainer_state.json").read_text())
    assert not state["finished"] and state["global_step"] > 0
    assert train(load_config(path, ["train.time_budget=2s"]), resume=True).stopped == "time_budget"
    assert json.loads((run_dir / "last" / "trainer_state.json").read_text())["global_step"] > state["global_step"]
