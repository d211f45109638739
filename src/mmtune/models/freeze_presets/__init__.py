"""The freeze presets (`model.freeze.preset`): one module per preset, named as the preset.

Each module defines `PRESET`, a `FreezePreset`: which parameters of a backbone stay trainable. Presets only
choose; `freezing.apply_freeze` applies the choice, then the freeze/train globs on top.

The names are the modules found here, listed without importing them; adding a preset is one new module plus
its test (tests/models/test_freezing.py runs every preset found on every tiny backbone family).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mmtune.registry import check_entry, entry_module, entry_names

if TYPE_CHECKING:  # the names are checked without torch (mmtune config, pre-flight)
    from torch import nn


@dataclass(frozen=True)
class FreezePreset:
    # (backbone, its parameter names in registration order, model.freeze.last_n) -> the names left trainable;
    # an InputError naming model.freeze.* when the backbone has nothing the preset can work with.
    trainable: Callable[[nn.Module, list[str], int], set[str]]
    # Reads a VLM's language model only: its block list, not the vision tower's (often as long or longer).
    language_model_only: bool = False


def known_presets() -> list[str]:
    return entry_names(__path__)


def check_preset(name: str) -> None:
    check_entry(__path__, name, "model.freeze.preset", "preset")


def get_preset(name: str) -> FreezePreset:
    return entry_module(__name__, __path__, name, "model.freeze.preset", "preset").PRESET
