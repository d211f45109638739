import pytest
import torch
import torch.nn.functional as F

from mmtune.errors import InputError
from mmtune.objectives._common import class_weights
from mmtune.objectives.focal import FocalLoss
from tests.objectives.helpers import build, logits_and_targets

VIMMSD_COUNTS = {"not-sarcasm": 6062, "multi-sarcasm": 4224, "image-sarcasm": 442, "text-sarcasm": 77}


def test_negative_gamma_names_the_key():
    with pytest.raises(InputError, match="train.focal_gamma"):
        FocalLoss(gamma=-1.0)


@pytest.mark.parametrize(("alpha", "smoothing"), [(None, 0.0), (None, 0.1), ([0.5, 1.0, 2.0, 4.0], 0.0),
                                                  ([0.5, 1.0, 2.0, 4.0], 0.2)])
def test_focal_with_gamma_zero_is_cross_entropy(alpha, smoothing):
    logits, targets = logits_and_targets()
    weight = None if alpha is None else torch.tensor(alpha)
    focal = FocalLoss(gamma=0.0, alpha=weight, label_smoothing=smoothing)(logits, targets)
    expected = F.cross_entropy(logits, targets, weight=weight, label_smoothing=smoothing)
    torch.testing.assert_close(focal, expected, rtol=1e-6, atol=1e-7)


def test_focal_matches_its_formula_and_down_weights_easy_examples():
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 0.5, 0.0]])  # confident correct, then unsure
    targets = torch.tensor([0, 1])
    p = F.softmax(logits, dim=1)[torch.arange(2), targets]
    expected = (-(1 - p) ** 2 * torch.log(p)).mean()
    torch.testing.assert_close(FocalLoss(gamma=2.0)(logits, targets), expected)
    easy, hard = logits[:1], logits[1:]
    ce_easy, ce_hard = F.cross_entropy(easy, targets[:1]), F.cross_entropy(hard, targets[1:])
    focal_easy, focal_hard = FocalLoss(2.0)(easy, targets[:1]), FocalLoss(2.0)(hard, targets[1:])
    assert focal_easy < ce_easy and focal_easy / ce_easy < focal_hard / ce_hard


def test_focal_is_finite_for_saturated_logits_and_fractional_gamma():
    logits = torch.tensor([[60.0, -60.0], [-60.0, 60.0]], requires_grad=True)
    loss = FocalLoss(gamma=0.5)(logits, torch.tensor([0, 0]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_focal_alpha_comes_from_the_class_weight_scheme():
    counts = list(VIMMSD_COUNTS.values())
    assert build("focal", counts, list(VIMMSD_COUNTS), focal_gamma=1.0).alpha is None
    focal = build("focal", counts, list(VIMMSD_COUNTS), class_weights="sqrt_inverse", focal_gamma=1.0)
    torch.testing.assert_close(focal.alpha, class_weights(counts, "sqrt_inverse"))
    assert focal.gamma == 1.0
