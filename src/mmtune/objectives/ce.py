"""ce: softmax cross-entropy on one logit per label (torch's), with class weights and label smoothing."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from mmtune.objectives import LossSettings, Objective, register_objective
from mmtune.objectives._common import check_label_smoothing, loss_weights, one_per_label, softmax_log_probs


def build_loss(counts: Sequence[int], labels: list[str], train: LossSettings) -> nn.Module:
    check_label_smoothing(train.label_smoothing)
    weight = loss_weights(counts, labels, train.class_weights, train.effective_number_beta)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=train.label_smoothing)


register_objective(Objective("ce", one_per_label, build_loss, softmax_log_probs))
