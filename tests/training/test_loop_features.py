"""Loop features on tiny fusion runs: step evaluation, early stopping, two stages, trackers, LoRA predict."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

from mmtune.config import load_config
from mmtune.recipes.predict import predict
from mmtune.recipes.train import train
from tests.training.conftest import fusion_config, write_config


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def run(demo, tiny, tmp_path, **settings):
    config = fusion_config(demo, tiny, tmp_path / "run", **settings)
    model = settings.pop("model", None)
    if model:
        config["model"] |= model
    return train(load_config(write_config(config, tmp_path / "c.yaml"))).stopped, tmp_path / "run"


def test_evaluation_every_n_steps(demo_small, tiny_models, tmp_path):
    _, run_dir = run(demo_small, tiny_models, tmp_path, epochs=1, eval_every_steps=4)
    kinds = [(r["kind"], r["step"]) for r in records(run_dir)]
    assert kinds == [("step", 4), ("step", 8), ("epoch", 9)]


def test_early_stopping_on_the_selection_metric(demo_small, tiny_models, tmp_path):
    # Nothing can improve with zero learning rates: the second evaluation is the patience's end.
    stopped, run_dir = run(demo_small, tiny_models, tmp_path, epochs=10, lr=0.0, head_lr=0.0,
                           early_stopping_patience=1)
    assert stopped == "early_stopping" and len(records(run_dir)) == 2


def test_head_only_stage_keeps_the_backbone_then_unfreezes_it(demo_small, tiny_models, tmp_path):
    config = fusion_config(demo_small, tiny_models, tmp_path / "one", epochs=1)
    config["model"]["freeze"] = {"head_only_epochs": 1}
    train(load_config(write_config(config, tmp_path / "a.yaml")))
    config2 = fusion_config(demo_small, tiny_models, tmp_path / "two", epochs=2)
    config2["model"]["freeze"] = {"head_only_epochs": 1}
    train(load_config(write_config(config2, tmp_path / "b.yaml")))
    pretrained = AutoModel.from_pretrained(tiny_models["bert"]).state_dict()
    one = load_file(str(tmp_path / "one" / "last" / "trainable.safetensors"))
    two = load_file(str(tmp_path / "two" / "last" / "trainable.safetensors"))
    backbone = [name for name in one if "encoder.layer.0.attention.self.query.weight" in name]
    assert backbone, list(one)[:5]
    key = backbone[0]
    assert key.startswith("text_tower.model.")
    assert torch.equal(one[key], pretrained[key.removeprefix("text_tower.model.")])  # stage 1: backbone kept
    assert not torch.equal(one[key], two[key])  # stage 2: it trains
    head = [name for name in one if name.startswith("head.")][0]
    assert not torch.equal(one[head], two[head])


def test_tensorboard_tracker_writes_events(demo_small, tiny_models, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, run_dir = run(demo_small, tiny_models, tmp_path, epochs=1, log_with=["tensorboard"], log_every_steps=2)
    # One event file, in the run folder itself (its TensorBoard run is the folder): none in a folder named after the
    # config's `name` (tiny) or a timestamp.
    [events] = run_dir.rglob("events.out.tfevents.*")
    assert events.parent == run_dir
    scalars = EventAccumulator(str(events)).Reload()
    assert "config/text_summary" in scalars.Tags()["tensors"]  # the resolved config, in the text tab
    # 9 steps: the training loss of every second step (written unflushed) and the epoch's evaluation, all on disk.
    assert [event.step for event in scalars.Scalars("train/loss")] == [2, 4, 6, 8]
    assert [event.step for event in scalars.Scalars("train/lr")] == [2, 4, 6, 8]
    assert [event.step for event in scalars.Scalars("val/macro_f1")] == [9]


def test_lora_run_predicts_after_reloading_adapters(demo_small, tiny_models, tmp_path):
    config = fusion_config(demo_small, tiny_models, tmp_path / "run", epochs=1)
    config["model"]["lora"] = {"enabled": True, "r": 4}
    config["model"]["fusion"]["lora_towers"] = ["text"]
    train(load_config(write_config(config, tmp_path / "c.yaml")))
    saved = load_file(str(tmp_path / "run" / "best" / "trainable.safetensors"))
    assert any("lora_A" in name for name in saved)
    out = predict(tmp_path / "run", demo_small.test, demo_small.test_images, tmp_path / "p.csv").path
    lines = out.read_text().splitlines()
    assert len(lines) == 25
    # The reloaded model reproduces the run's own test predictions.
    assert lines == (tmp_path / "run" / "test_predictions.csv").read_text().splitlines()
