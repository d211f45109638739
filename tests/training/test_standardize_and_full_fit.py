"""model.fusion.feature_norm (tower features normalised with training-post statistics saved in the weights) and
train.full_fit (every training post trains, best/ = the last epoch)."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mmtune import api
from mmtune.config import load_config
from mmtune.evaluation.predictions import read_predictions
from mmtune.models.fusion import StandardizedLinear
from mmtune.recipes.train import build_model, load_split, train
from tests.training.conftest import fusion_config, write_config


def frozen_config(demo, tiny_models, tmp_path, name, **train_keys):
    """Frozen tiny towers with the feature cache on: the configuration standardisation applies to."""
    config = fusion_config(demo, tiny_models, tmp_path / name,
                           **({"epochs": 2, "feature_cache": True, "cache_dir": str(tmp_path / "cache")} | train_keys))
    config["model"]["freeze"] = {"preset": "all"}
    return config


def train_features(cfg, run_dir):
    """The cached text/image features of the run's training posts, as the model computes them."""
    split = load_split(cfg, run_dir, write=False)
    model = build_model(cfg, split.labels)
    examples = model.prepare(split.train, train=False)
    return {name: torch.stack([e.features[name] for e in examples]).double() for name in ("text", "image")}


@pytest.fixture(scope="module")
def standardized_run(demo_small, tiny_models, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("std")
    cfg = load_config(write_config(frozen_config(demo_small, tiny_models, tmp, "run"), tmp / "run.yaml"))
    train(cfg)
    return cfg


def test_saved_statistics_are_the_training_posts_mean_and_std_per_feature(standardized_run):
    cfg = standardized_run
    run_dir = cfg.output_dir
    weights = load_file(f"{run_dir}/best/trainable.safetensors")
    features = train_features(load_config(f"{run_dir}/config.yaml"), run_dir)
    for name in ("text", "image"):
        mean, std = weights[f"{name}_proj.0.input_mean"].double(), weights[f"{name}_proj.0.input_std"].double()
        np.testing.assert_allclose(mean, features[name].mean(0), atol=1e-5)
        np.testing.assert_allclose(std, features[name].std(0, unbiased=False), rtol=1e-4, atol=1e-6)
        assert not torch.allclose(mean, torch.zeros_like(mean))  # fitted, not the identity


def test_predict_uses_the_saved_statistics(standardized_run, demo_small):
    cfg = standardized_run
    again = api.load_run(cfg.output_dir).predict_proba(demo_small.test, demo_small.test_images)
    written = read_predictions(f"{cfg.output_dir}/test_predictions.csv")
    assert again.ids == written.ids
    np.testing.assert_allclose(again.probs, written.probs, atol=2e-6)


def test_feature_norm_none_keeps_the_identity(demo_small, tiny_models, tmp_path):
    config = frozen_config(demo_small, tiny_models, tmp_path, "raw", epochs=1)
    config["model"]["fusion"]["feature_norm"] = "none"
    cfg = load_config(write_config(config, tmp_path / "raw.yaml"))
    train(cfg)
    weights = load_file(f"{cfg.output_dir}/best/trainable.safetensors")
    assert torch.equal(weights["text_proj.0.input_mean"], torch.zeros_like(weights["text_proj.0.input_mean"]))
    assert torch.equal(weights["image_proj.0.input_std"], torch.ones_like(weights["image_proj.0.input_std"]))


def test_per_feature_a_constant_feature_keeps_its_scale_and_the_output_is_standardised():
    layer = StandardizedLinear(3, 2)
    features = torch.tensor([[1.0, 5.0, 100.0], [3.0, 5.0, 300.0], [5.0, 5.0, 500.0]])
    layer.fit(features, per_feature=True)
    assert layer.input_std[1] == 1.0  # the constant column: not divided by zero
    with torch.no_grad():
        layer.weight.copy_(torch.eye(2, 3))
        layer.bias.zero_()
        out = layer(features)
    np.testing.assert_allclose(out[:, 0], [-1.2247449, 0.0, 1.2247449], atol=1e-6)
    np.testing.assert_allclose(out[:, 1], [0.0, 0.0, 0.0], atol=1e-6)


def test_full_fit_trains_on_every_post_for_the_given_epochs(demo_small, tiny_models, tmp_path):
    config = frozen_config(demo_small, tiny_models, tmp_path, "full", epochs=3, full_fit=True,
                           early_stopping_patience=1)
    cfg = load_config(write_config(config, tmp_path / "full.yaml"))
    train(cfg)
    run_dir = tmp_path / "full"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]  # no early stopping, whatever the fit scores did
    best, last = (load_file(run_dir / name / "trainable.safetensors") for name in ("best", "last"))
    last |= load_file(run_dir / "last" / "weight_average.safetensors")  # what is evaluated and kept (ema_decay)
    assert all(torch.equal(best[key], last[key]) for key in last)  # best/ = the last epoch
    assert not (run_dir / "folds.csv").exists() and not (run_dir / "val_predictions.csv").exists()
    n_train = len(json.loads(demo_small.train.read_text(encoding="utf-8")))
    assert records[-1]["step"] == 3 * -(-n_train // 8)  # every training post, batch 8, 3 epochs
    assert len(read_predictions(run_dir / "test_predictions.csv").ids) == len(
        json.loads(demo_small.test.read_text(encoding="utf-8")))


def test_per_tower_one_scale_keeps_the_features_relative_sizes():
    layer = StandardizedLinear(2, 2)
    features = torch.tensor([[0.0, 10.0], [2.0, 30.0]])  # stds 1 and 10
    layer.fit(features, per_feature=False)
    np.testing.assert_allclose(layer.input_mean, [1.0, 20.0])
    np.testing.assert_allclose(layer.input_std, [np.sqrt(50.5)] * 2, rtol=1e-6)
