"""Freeze presets (the registry in models/freeze_presets/) and glob overrides on tiny random backbones."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from mmtune.errors import InputError
from mmtune.models.freeze_presets import get_preset, known_presets
from mmtune.models.freeze_presets.last_n import find_blocks
from mmtune.models.freezing import FreezeReport, apply_freeze
from tests.models.backbones import (
    tiny_bert,
    tiny_clip_vision,
    tiny_convnext,
    tiny_siglip_vision,
    tiny_vilt,
    tiny_vit,
    tiny_xlm_roberta,
    train_steps,
)


class TinyCNN(nn.Module):
    """EfficientNet-like: a `_blocks` list with BatchNorm, then a head conv and norm."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3)
        self._blocks = nn.ModuleList([nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4))
                                      for _ in range(3)])
        self.head_norm = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self._blocks:
            x = x + block(x)
        return self.head_norm(x).mean(dim=(2, 3))


FAMILIES: dict[str, tuple[Callable[[], nn.Module], Callable[[nn.Module], nn.Module]]] = {
    "bert": (tiny_bert, lambda m: m.encoder.layer),
    "xlm-r": (tiny_xlm_roberta, lambda m: m.encoder.layer),
    "clip-vision": (tiny_clip_vision, lambda m: m.encoder.layers),
    "siglip-vision": (tiny_siglip_vision, lambda m: m.encoder.layers),
    # transformers 5.23's ViT keeps its blocks at the top (`layers`); older versions had `encoder.layer`.
    "vit": (tiny_vit, lambda m: m.layers if hasattr(m, "layers") else m.encoder.layer),
    "vilt": (tiny_vilt, lambda m: m.encoder.layer),
    # ConvNeXt's stage 2 holds 3 blocks in `stages.1.layers`, more than the 2 `stages`: the outer list wins.
    "convnext": (tiny_convnext, lambda m: m.encoder.stages),
    "cnn": (TinyCNN, lambda m: m._blocks),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_find_blocks(family: str) -> None:
    build, expected = FAMILIES[family]
    model = build()
    assert find_blocks(model)[1] is expected(model)


def test_find_blocks_none_without_a_block_list() -> None:
    assert find_blocks(nn.Sequential(nn.Linear(2, 2), nn.ReLU())) is None


EXPECTED_TRAINABLE: dict[str, Callable[[str], bool]] = {
    "none": lambda name: True,
    "all": lambda name: False,
    "last_n": lambda name: name.startswith(("encoder.layer.1.", "pooler.")),
    "embeddings": lambda name: not name.startswith("embeddings."),
    "attention": lambda name: ".attention." in name,
}


def test_every_preset_found_is_tested_here() -> None:
    assert known_presets() == sorted(EXPECTED_TRAINABLE)
    assert [name for name in known_presets() if get_preset(name).language_model_only] == [
        "attention", "embeddings", "last_n"]


@pytest.mark.parametrize("preset", EXPECTED_TRAINABLE)
def test_frozen_parameters_stay_bit_identical(preset: str) -> None:
    backbone = tiny_bert()
    head = nn.Linear(32, 2)
    apply_freeze(backbone, preset, last_n=1)
    expected = {name for name, _ in backbone.named_parameters() if EXPECTED_TRAINABLE[preset](name)}
    assert {name for name, p in backbone.named_parameters() if p.requires_grad} == expected

    before = {name: p.detach().clone() for name, p in backbone.named_parameters()}
    head_before = head.weight.detach().clone()
    train_steps(backbone, head)

    changed = {name for name, p in backbone.named_parameters() if not torch.equal(p, before[name])}
    assert changed == expected
    assert not torch.equal(head.weight, head_before)
    assert all(p.grad is None for p in backbone.parameters() if not p.requires_grad)


@pytest.mark.parametrize("last_n", [1, 2, 3])
def test_last_n_trains_the_last_blocks_and_what_follows_them(last_n: int) -> None:
    backbone = tiny_bert(layers=3)
    report = apply_freeze(backbone, "last_n", last_n=last_n)
    per_block = sum(p.numel() for p in backbone.encoder.layer[0].parameters())
    pooler = sum(p.numel() for p in backbone.pooler.parameters())
    assert report.trainable == last_n * per_block + pooler
    assert report.total == sum(p.numel() for p in backbone.parameters())
    assert report.trainable_modules == ["encoder", "pooler"]


def test_last_n_keeps_norms_before_the_blocks_frozen() -> None:
    model = tiny_clip_vision()
    apply_freeze(model, "last_n", last_n=1)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert {"post_layernorm.weight", "post_layernorm.bias"} <= trainable
    assert not any(name.startswith(("pre_layrnorm.", "embeddings.", "encoder.layers.0.")) for name in trainable)


def test_train_globs_apply_after_freeze_globs() -> None:
    backbone = tiny_bert()
    apply_freeze(backbone, "last_n", last_n=1, freeze_globs=["pooler.*", "encoder.*"],
                 train_globs=["encoder.layer.1.output.*", "embeddings.LayerNorm.*"])
    trainable = {name for name, p in backbone.named_parameters() if p.requires_grad}
    assert trainable == {name for name, _ in backbone.named_parameters()
                         if name.startswith(("encoder.layer.1.output.", "embeddings.LayerNorm."))}


@pytest.mark.parametrize("key", ["freeze_globs", "train_globs"])
def test_a_glob_that_matches_nothing_is_an_error_and_changes_nothing(key: str) -> None:
    backbone = tiny_bert()
    with pytest.raises(InputError, match=rf"model\.freeze\.{key}: 'encoder.layers.\*' matches no parameter"):
        apply_freeze(backbone, "all", **{key: ["encoder.layers.*"]})
    assert all(p.requires_grad for p in backbone.parameters())


def test_a_module_name_glob_gets_a_hint() -> None:
    with pytest.raises(InputError, match=r"did you mean 'pooler\.\*'"):
        apply_freeze(tiny_bert(), "none", freeze_globs=["pooler"])


@pytest.mark.parametrize(("preset", "last_n", "model", "message"), [
    ("frozen", 0, tiny_bert, r"model\.freeze\.preset: unknown preset 'frozen' \(known: .*attention"),
    ("last_n", 0, tiny_bert, r"model\.freeze\.last_n: 0 is not between 1 and the 2 blocks"),
    ("last_n", 3, tiny_bert, r"model\.freeze\.last_n: 3"),
    ("last_n", 1, lambda: nn.Sequential(nn.Linear(2, 2)), r"model\.freeze\.preset: 'last_n' needs a block list"),
    ("attention", 0, TinyCNN, r"model\.freeze\.preset: 'attention' found no attention parameters"),
    ("embeddings", 0, TinyCNN, r"model\.freeze\.preset: 'embeddings' found no embedding parameters"),
])
def test_bad_presets_name_the_key(preset: str, last_n: int, model: Callable[[], nn.Module], message: str) -> None:
    with pytest.raises(InputError, match=message):
        apply_freeze(model(), preset, last_n=last_n)


def test_last_n_is_ignored_by_other_presets() -> None:
    # The config always carries last_n (default 2), whatever the preset.
    assert apply_freeze(tiny_bert(), "embeddings", last_n=7).trainable > 0


def test_embeddings_preset_on_a_vision_tower() -> None:
    model = tiny_siglip_vision()
    apply_freeze(model, "embeddings")
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {name for name, _ in model.named_parameters() if name.startswith("embeddings.")}


def test_integer_weights_stay_frozen_under_none() -> None:
    module = nn.Linear(2, 2)
    module.register_parameter("codes", nn.Parameter(torch.zeros(2, dtype=torch.uint8), requires_grad=False))
    report = apply_freeze(module, "none")
    assert not module.codes.requires_grad and module.weight.requires_grad
    assert report.trainable == 6 and report.total == 8


def test_report_summary_is_one_line() -> None:
    report = apply_freeze(tiny_bert(), "last_n", last_n=1)
    assert isinstance(report, FreezeReport)
    summary = report.summary()
    assert "\n" not in summary
    assert summary.startswith("freeze last_n=1: ")
    assert f"{report.trainable:,} / {report.total:,}" in summary and "in encoder, pooler" in summary
    assert apply_freeze(tiny_bert(), "all").summary().endswith("in nothing")
