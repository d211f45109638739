"""The fusions of the `fusion` kind: one module per fusion, named as `model.fusion.method` names it.

Each module defines `build(dim, n_post, dropout) -> nn.Module`: a module with an `out_dim` attribute whose
`forward(t, i, post)` joins the projected text vector t [B, d] and image vector i [B, d] (d = `dim`, the
projection size) with the post features [B, P] (None when `n_post` is 0) into [B, out_dim] for the head.

The names are the modules found here, listed without importing them; adding a fusion is one new module plus
its test (tests/models/test_fusions.py runs every fusion found).
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

from mmtune.registry import check_entry, entry_module, entry_names

if TYPE_CHECKING:  # the names are checked without torch (mmtune config, pre-flight)
    from torch import nn


def known_fusions() -> list[str]:
    return entry_names(__path__)


def check_fusion_name(name: str) -> None:
    check_entry(__path__, name, "model.fusion.method", "fusion")


def get_fusion(name: str) -> ModuleType:
    """The module of fusion `name` (exit 2 naming model.fusion.method when there is none)."""
    return entry_module(__name__, __path__, name, "model.fusion.method", "fusion")


def make_fusion(name: str, dim: int, n_post: int, dropout: float) -> nn.Module:
    """The fusion module `name` for projected vectors of size `dim` and `n_post` post features."""
    return get_fusion(name).build(dim, n_post, dropout)
