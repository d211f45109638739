"""attention: only the attention layers train."""

from __future__ import annotations

from torch import nn

from mmtune.errors import InputError
from mmtune.models.freeze_presets import FreezePreset

ATTENTION_MARKERS = ("attention", "attn")  # covers `self_attn`, `SelfAttention`, `crossattention`


def in_attention(name: str) -> bool:
    return any(marker in part.lower() for part in name.split(".")[:-1] for marker in ATTENTION_MARKERS)


def _attention_only(module: nn.Module, names: list[str], last_n: int) -> set[str]:
    attention = {name for name in names if in_attention(name)}
    if not attention:
        raise InputError(f"model.freeze.preset: 'attention' found no attention parameters in "
                         f"{type(module).__name__}")
    return attention


PRESET = FreezePreset(_attention_only, language_model_only=True)
