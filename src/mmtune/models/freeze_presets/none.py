"""none: nothing frozen, the whole backbone trains."""

from __future__ import annotations

from torch import nn

from mmtune.models.freeze_presets import FreezePreset


def _everything(module: nn.Module, names: list[str], last_n: int) -> set[str]:
    return set(names)


PRESET = FreezePreset(_everything)
