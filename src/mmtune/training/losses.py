"""Classification losses for imbalanced labels: class weights, focal loss, and the two-bit sarcasm loss.

Every loss takes model outputs [B, C] (C = `loss_output_size(name, K)`) and integer targets [B] in the
run's label order. `class_log_probs` turns those outputs into K-class log-probabilities, so that
metrics, calibration and the probability CSVs never need to know which loss trained the model.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mmtune.data.labels import SARCASM_LABELS, to_bits
from mmtune.errors import InputError

CLASS_WEIGHT_SCHEMES = ("none", "inverse", "sqrt_inverse", "effective_number")
LOSSES = ("ce", "focal", "bits")


# ---------------------------------------------------------------------------------------------- class weights


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


# build_loss's `class_weights` keyword (the config key's name) shadows the function inside it.
_class_weights = class_weights


# ---------------------------------------------------------------------------------------------- focal loss


def _check_label_smoothing(label_smoothing: float) -> None:
    if not 0.0 <= label_smoothing < 1.0:
        raise InputError(f"train.label_smoothing must be in [0, 1), got {label_smoothing}")


def _optional_float(values: torch.Tensor | Sequence[float] | None) -> torch.Tensor | None:
    return None if values is None else torch.as_tensor(values, dtype=torch.float32)


class FocalLoss(nn.Module):
    """Multi-class focal loss (Lin et al. 2017), -alpha_y (1 - p_y)^gamma log p_y, averaged like torch's CE.

    The reduction follows `nn.CrossEntropyLoss(weight=alpha, label_smoothing=...)`: the sum is divided by
    the sum of alpha over the batch targets, and label smoothing mixes in eps/K of every class's term.
    So gamma=0 gives exactly that cross-entropy, and `focal` differs from `ce` only by the focusing term.
    """

    alpha: torch.Tensor | None

    def __init__(self, gamma: float, alpha: torch.Tensor | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if gamma < 0:
            raise InputError(f"train.focal_gamma must be >= 0, got {gamma}")
        _check_label_smoothing(label_smoothing)
        self.gamma = float(gamma)
        self.label_smoothing = float(label_smoothing)
        # A buffer moves with .to(device) and is saved in state_dict with the rest of the module.
        self.register_buffer("alpha", _optional_float(alpha))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=-1)
        terms = -log_p
        if self.gamma > 0:
            # clamp: 1 - exp(log p) can round below 0 for p == 1, and 0 ** gamma has an infinite slope for gamma < 1.
            terms = (-torch.expm1(log_p)).clamp_min(1e-12).pow(self.gamma) * terms
        alpha = self.alpha if self.alpha is not None else torch.ones(logits.shape[-1], device=logits.device)
        if alpha.shape[0] != logits.shape[-1]:
            raise ValueError(f"focal alpha has {alpha.shape[0]} classes, logits have {logits.shape[-1]}")
        target_alpha = alpha[targets]
        per_sample = target_alpha * terms.gather(1, targets.unsqueeze(1)).squeeze(1)
        numerator = (1.0 - self.label_smoothing) * per_sample.sum()
        if self.label_smoothing > 0:
            numerator = numerator + self.label_smoothing / logits.shape[-1] * (terms * alpha).sum()
        return numerator / target_alpha.sum()


# ---------------------------------------------------------------------------------------------- two-bit loss


def _bit_table(labels: Sequence[str]) -> torch.Tensor:
    """[K, 2] (text_sarcastic, image_sarcastic) per label, in the run's label order."""
    if len(labels) != len(SARCASM_LABELS) or set(labels) != set(SARCASM_LABELS):
        raise InputError(f"train.loss=bits needs the 4 sarcasm labels {list(SARCASM_LABELS)} as data.labels, "
                         f"got {list(labels)}")
    return torch.tensor([to_bits(label) for label in labels], dtype=torch.float32)


def bits_to_class_log_probs(bit_logits: torch.Tensor, labels: list[str]) -> torch.Tensor:
    """[B, 2] logits of (text sarcastic, image sarcastic) -> [B, K] class log-probabilities.

    The bits are independent given the post, so log P(class) = sum of log P(bit); logsigmoid keeps
    large logits finite where log(sigmoid(x)) would give -inf.
    """
    table = _bit_table(labels).to(bit_logits.device)
    on, off = F.logsigmoid(bit_logits.float()), F.logsigmoid(-bit_logits.float())
    # [B, 1, 2] against [K, 2] -> [B, K, 2]: log P(bit = the value this class needs).
    per_bit = table * on.unsqueeze(1) + (1 - table) * off.unsqueeze(1)
    return per_bit.sum(dim=-1)


class BitsLoss(nn.Module):
    """BCE-with-logits on two bits per post, for the 4-class sarcasm scheme.

    multi-sarcasm is "text and image both sarcastic", so the rare text-/image-sarcasm classes share
    their evidence with the large multi-sarcasm class instead of being learned from 77 / 442 posts alone.
    `class_weight` [K] weights each post by its 4-class label (averaged like torch's weighted CE), which
    is how the class-weight schemes apply to this loss; `pos_weight` [2] is passed on to the BCE.
    """

    bit_table: torch.Tensor
    pos_weight: torch.Tensor | None
    class_weight: torch.Tensor | None

    def __init__(self, labels: list[str], pos_weight: torch.Tensor | None = None, *,
                 class_weight: torch.Tensor | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        _check_label_smoothing(label_smoothing)
        self.labels = list(labels)
        self.label_smoothing = float(label_smoothing)
        self.register_buffer("bit_table", _bit_table(labels))
        self.register_buffer("pos_weight", _optional_float(pos_weight))
        self.register_buffer("class_weight", _optional_float(class_weight))

    def forward(self, bit_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        bits = self.bit_table[targets]
        if self.label_smoothing > 0:
            bits = bits * (1 - self.label_smoothing) + self.label_smoothing / 2
        bce = F.binary_cross_entropy_with_logits(bit_logits.float(), bits, pos_weight=self.pos_weight,
                                                 reduction="none").mean(dim=1)
        if self.class_weight is None:
            return bce.mean()
        weight = self.class_weight[targets]
        return (weight * bce).sum() / weight.sum()


# ---------------------------------------------------------------------------------------------- by name


def _check_loss_name(name: str) -> None:
    if name not in LOSSES:
        raise InputError(f"train.loss must be one of {list(LOSSES)}, got '{name}'")


def loss_output_size(name: str, num_labels: int) -> int:
    """How many outputs the classification head needs for this loss."""
    _check_loss_name(name)
    return 2 if name == "bits" else num_labels


def class_log_probs(name: str, logits: torch.Tensor, labels: list[str]) -> torch.Tensor:
    """Model outputs -> [B, K] class log-probabilities in `labels` order."""
    _check_loss_name(name)
    if name == "bits":
        return bits_to_class_log_probs(logits, labels)
    return F.log_softmax(logits.float(), dim=-1)


def build_loss(name: str, counts: Sequence[int], labels: list[str], *, class_weights: str = "none",
               beta: float = 0.999, gamma: float = 2.0, label_smoothing: float = 0.0) -> nn.Module:
    """The loss module named by `train.loss`; `counts` are the training counts per label, in `labels` order."""
    _check_loss_name(name)
    if len(counts) != len(labels):
        raise ValueError(f"{len(counts)} class counts for {len(labels)} labels")
    _check_label_smoothing(label_smoothing)
    weights = _class_weights(counts, class_weights, beta)
    weighted = class_weights != "none"
    if name == "ce":
        return nn.CrossEntropyLoss(weight=weights if weighted else None, label_smoothing=label_smoothing)
    if name == "focal":
        return FocalLoss(gamma, weights if weighted else None, label_smoothing)
    return BitsLoss(labels, None, class_weight=weights if weighted else None, label_smoothing=label_smoothing)
