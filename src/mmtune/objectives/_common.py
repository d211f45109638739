"""What several objectives share: class weights for imbalanced labels, the label-smoothing check, softmax."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from mmtune.errors import InputError
from mmtune.objectives import CLASS_WEIGHT_SCHEMES


def _raw_weights(counts: Sequence[int], scheme: str, beta: float) -> list[float]:
    if scheme == "inverse":
        return [1.0 / n if n > 0 else 0.0 for n in counts]
    if scheme == "sqrt_inverse":
        return [1.0 / math.sqrt(n) if n > 0 else 0.0 for n in counts]
    if scheme == "effective_number":
        if not 0.0 <= beta < 1.0:
            raise InputError(f"train.effective_number_beta must be in [0, 1) for effective_number, got {beta}")
        # -expm1(n * log(beta)) == 1 - beta**n without cancellation for beta close to 1.
        return [(1.0 - beta) / -math.expm1(n * math.log(beta)) if n > 0 and beta > 0 else float(n > 0)
                for n in counts]
    raise InputError(f"train.class_weights must be one of {list(CLASS_WEIGHT_SCHEMES)}, got '{scheme}'")


def class_weights(counts: Sequence[int], scheme: str, beta: float = 0.999) -> torch.Tensor:
    """Per-class loss weights [K], scaled so that the mean weight over the training samples is 1.

    The scaling keeps the loss (and so the learning rate) on the same scale as unweighted training;
    `inverse` then equals scikit-learn's "balanced" weights N / (K * n_c).
    """
    counts = [int(n) for n in counts]
    if any(n < 0 for n in counts):
        raise ValueError(f"class counts must be non-negative, got {counts}")
    total = sum(counts)
    if total == 0:
        raise ValueError("class weights need at least one training example")
    if scheme == "none":
        return torch.ones(len(counts), dtype=torch.float32)
    raw = _raw_weights(counts, scheme, beta)
    empty = [index for index, n in enumerate(counts) if n == 0]
    if empty:
        warnings.warn(f"classes {empty} have no training examples; their loss weight is 0", stacklevel=2)
    scale = total / sum(w * n for w, n in zip(raw, counts))
    return torch.tensor([w * scale for w in raw], dtype=torch.float32)


def loss_weights(counts: Sequence[int], labels: Sequence[str], scheme: str, beta: float) -> torch.Tensor | None:
    """The class weights a loss gets from `train.class_weights`; None for `none` (an unweighted loss)."""
    if len(counts) != len(labels):
        raise ValueError(f"{len(counts)} class counts for {len(labels)} labels")
    weights = class_weights(counts, scheme, beta)
    return None if scheme == "none" else weights


def check_label_smoothing(label_smoothing: float) -> None:
    if not 0.0 <= label_smoothing < 1.0:
        raise InputError(f"train.label_smoothing must be in [0, 1), got {label_smoothing}")


def optional_float(values: torch.Tensor | Sequence[float] | None) -> torch.Tensor | None:
    return None if values is None else torch.as_tensor(values, dtype=torch.float32)


def softmax_log_probs(logits: torch.Tensor, labels: list[str]) -> torch.Tensor:
    """[B, K] class logits -> [B, K] log-probabilities."""
    return F.log_softmax(logits.float(), dim=-1)


def one_per_label(num_labels: int) -> int:
    return num_labels
