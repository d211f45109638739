"""focal: multi-class focal loss (Lin et al. 2017) on one logit per label; class weights are its alpha."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mmtune.errors import InputError
from mmtune.objectives import LossSettings, Objective, register_objective
from mmtune.objectives._common import (
    check_label_smoothing,
    loss_weights,
    one_per_label,
    optional_float,
    softmax_log_probs,
)


class FocalLoss(nn.Module):
    """-alpha_y (1 - p_y)^gamma log p_y, averaged like torch's CE.

    The reduction follows `nn.CrossEntropyLoss(weight=alpha, label_smoothing=...)`: the sum is divided by
    the sum of alpha over the batch targets, and label smoothing mixes in eps/K of every class's term.
    So gamma=0 gives exactly that cross-entropy, and `focal` differs from `ce` only by the focusing term.
    """

    alpha: torch.Tensor | None

    def __init__(self, gamma: float, alpha: torch.Tensor | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if gamma < 0:
            raise InputError(f"train.focal_gamma must be >= 0, got {gamma}")
        check_label_smoothing(label_smoothing)
        self.gamma = float(gamma)
        self.label_smoothing = float(label_smoothing)
        # A buffer moves with .to(device) and is saved in state_dict with the rest of the module.
        self.register_buffer("alpha", optional_float(alpha))

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


def build_loss(counts: Sequence[int], labels: list[str], train: LossSettings) -> nn.Module:
    check_label_smoothing(train.label_smoothing)
    alpha = loss_weights(counts, labels, train.class_weights, train.effective_number_beta)
    return FocalLoss(train.focal_gamma, alpha, train.label_smoothing)


register_objective(Objective("focal", one_per_label, build_loss, softmax_log_probs))
