"""Every shipped config loads, and runs a short training on tiny models of the same families."""

from pathlib import Path

import pytest

from mmtune.config import load_config
from mmtune.models.kinds import check_kind
from mmtune.recipes.train import train
from mmtune.testing.tiny import make_tiny

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-configs")
    return {family: make_tiny(family, root / family) for family in ("bert", "vit", "vilt", "siglip", "xlm-roberta")}


def test_every_config_loads():
    paths = sorted(CONFIGS.glob("*.yaml"))
    assert {p.name for p in paths} >= {"demo.yaml", "vilt-t4.yaml", "siglip-phobert-t4.yaml"}
    for path in paths:
        cfg = load_config(path)
        assert check_kind(cfg).name == cfg.model.kind and cfg.train.metric == "macro_f1"  # no other kind's section


def _tiny_overrides(name: str, tiny: dict) -> list[str]:
    if name == "vilt-t4.yaml":
        return [f"model.name={tiny['vilt']}", "model.freeze.last_n=1"]  # the tiny ViLT has 2 blocks
    if name == "siglip-phobert-t4.yaml":
        # PhoBERT is a RoBERTa: the tiny XLM-R stands in for it, the tiny SigLIP for the SigLIP tower.
        return [f"model.fusion.text_encoder={tiny['xlm-roberta']}", f"model.fusion.image_encoder={tiny['siglip']}",
                "model.fusion.max_length=32"]
    return [f"model.fusion.text_encoder={tiny['bert']}", f"model.fusion.image_encoder={tiny['vit']}"]


@pytest.mark.parametrize("name", ["demo.yaml", "vilt-t4.yaml", "siglip-phobert-t4.yaml"])
def test_config_trains_on_tiny_models(name, demo_small, tiny_dirs, tmp_path):
    overrides = [
        f"output_dir={tmp_path / 'run'}", f"data.train={demo_small.train}",
        f"data.train_images={demo_small.train_images}",
        f"data.test={demo_small.test}", f"data.test_images={demo_small.test_images}", "train.epochs=1",
        "train.batch_size=16", "train.grad_accum=1", f"train.cache_dir={tmp_path / 'cache'}", "train.time_budget=null",
        *_tiny_overrides(name, tiny_dirs),
    ]
    cfg = load_config(CONFIGS / name, overrides)
    assert train(cfg).stopped in ("finished", "early_stopping")
    assert (tmp_path / "run" / "test_predictions.csv").exists()
