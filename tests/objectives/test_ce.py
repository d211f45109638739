import pytest
import torch
import torch.nn.functional as F

from mmtune.objectives._common import class_weights
from tests.objectives.helpers import build, logits_and_targets


@pytest.mark.parametrize("scheme", ["none", "inverse"])
def test_ce_label_smoothing_and_weights_are_torchs(scheme):
    logits, targets = logits_and_targets()
    counts = [50, 30, 15, 5]
    loss = build("ce", counts, ["a", "b", "c", "d"], class_weights=scheme, label_smoothing=0.1)
    weight = None if scheme == "none" else class_weights(counts, scheme)
    torch.testing.assert_close(loss(logits, targets),
                               F.cross_entropy(logits, targets, weight=weight, label_smoothing=0.1))
