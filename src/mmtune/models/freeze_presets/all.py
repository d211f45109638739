"""all: everything frozen, a pure feature extractor (the head lives outside the backbone)."""

from __future__ import annotations

from torch import nn

from mmtune.models.freeze_presets import FreezePreset


def _nothing(module: nn.Module, names: list[str], last_n: int) -> set[str]:
    return set()


PRESET = FreezePreset(_nothing)
