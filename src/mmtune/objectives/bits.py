"""bits: BCE-with-logits on two bits per post (text sarcastic, image sarcastic), for the 4-class sarcasm scheme.

multi-sarcasm is "text and image both sarcastic", so the rare text-/image-sarcasm classes share their
evidence with the large multi-sarcasm class instead of being learned from 77 / 442 posts alone.
The model gives 2 outputs per post; `bits_to_class_log_probs` maps them back to the 4 classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mmtune.errors import InputError
from mmtune.objectives import LossSettings, Objective, register_objective
from mmtune.objectives._common import check_label_smoothing, loss_weights, optional_float
from mmtune.sarcasm import SARCASM_LABELS, is_sarcasm_scheme, to_bits


def check_labels(labels: Sequence[str]) -> None:
    if not is_sarcasm_scheme(labels):
        raise InputError(f"train.loss=bits needs the 4 sarcasm labels {list(SARCASM_LABELS)} as data.labels, "
                         f"got {list(labels)}")


def _bit_table(labels: Sequence[str]) -> torch.Tensor:
    """[K, 2] (text_sarcastic, image_sarcastic) per label, in the run's label order."""
    check_labels(labels)
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
    """The two-bit BCE, averaged over the bits of each post.

    `class_weight` [K] weights each post by its 4-class label (averaged like torch's weighted CE), which
    is how the class-weight schemes apply to this loss; `pos_weight` [2] is passed on to the BCE.
    """

    bit_table: torch.Tensor
    pos_weight: torch.Tensor | None
    class_weight: torch.Tensor | None

    def __init__(self, labels: list[str], pos_weight: torch.Tensor | None = None, *,
                 class_weight: torch.Tensor | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        check_label_smoothing(label_smoothing)
        self.labels = list(labels)
        self.label_smoothing = float(label_smoothing)
        self.register_buffer("bit_table", _bit_table(labels))
        self.register_buffer("pos_weight", optional_float(pos_weight))
        self.register_buffer("class_weight", optional_float(class_weight))

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


def build_loss(counts: Sequence[int], labels: list[str], train: LossSettings) -> nn.Module:
    check_label_smoothing(train.label_smoothing)
    weight = loss_weights(counts, labels, train.class_weights, train.effective_number_beta)
    return BitsLoss(labels, None, class_weight=weight, label_smoothing=train.label_smoothing)


def _two_bits(num_labels: int) -> int:
    return 2


register_objective(Objective("bits", _two_bits, build_loss, bits_to_class_log_probs, check_labels))
