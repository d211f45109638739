"""Training objectives: the registry of `train.loss` names.

An objective says how many outputs a classifier needs for K labels (`output_size`), builds the loss on
those outputs (`build_loss`), and maps them to [B, K] class log-probabilities (`class_log_probs`), so that
metrics, calibration and the probability CSVs never need to know which loss trained the model.

One module per objective, named as the objective, registers itself with `register_objective` (timm's
register_model / create_model). The names are the package's public modules, listed without importing them:
config.py checks `train.loss` at load without importing torch; `get_objective` imports the one module it needs.
Adding a loss is one new module plus its test.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from mmtune.errors import InputError

if TYPE_CHECKING:
    import torch
    from torch import nn


class LossSettings(Protocol):
    """The `train.*` keys a loss reads (config.TrainConfig has them); config imports this package, not back."""

    class_weights: str
    effective_number_beta: float
    focal_gamma: float
    label_smoothing: float


def _any_labels(labels: Sequence[str]) -> None:
    """Most objectives work with any label set."""


@dataclass(frozen=True)
class Objective:
    """What the loop and the model kinds need to know about one `train.loss`."""

    name: str
    output_size: Callable[[int], int]  # K labels -> outputs per post
    build_loss: Callable[[Sequence[int], list[str], LossSettings], nn.Module]  # counts per label, labels, train.*
    class_log_probs: Callable[[torch.Tensor, list[str]], torch.Tensor]  # [B, output_size] -> [B, K]
    check_labels: Callable[[Sequence[str]], None] = field(default=_any_labels)  # InputError when unusable


_OBJECTIVES: dict[str, Objective] = {}

# `train.class_weights`: the schemes objectives/_common.py computes; config.py checks the key against them.
CLASS_WEIGHT_SCHEMES = ("none", "inverse", "sqrt_inverse", "effective_number")


def register_objective(objective: Objective) -> Objective:
    if objective.name in _OBJECTIVES:
        raise ValueError(f"objective '{objective.name}' is registered twice")
    _OBJECTIVES[objective.name] = objective
    return objective


def known_objectives() -> list[str]:
    """Every objective's name; modules whose name starts with '_' are shared helpers."""
    return sorted(module.name for module in pkgutil.iter_modules(__path__) if not module.name.startswith("_"))


def get_objective(name: str) -> Objective:
    known = known_objectives()
    if name not in known:
        raise InputError(f"train.loss: unknown objective '{name}' (known: {', '.join(known)})")
    importlib.import_module(f"{__name__}.{name}")  # runs its register_objective
    return _OBJECTIVES[name]
