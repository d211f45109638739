import pytest
import torch
import torch.nn.functional as F

from mmtune.errors import InputError
from mmtune.objectives import get_objective
from mmtune.objectives.bits import BitsLoss, bits_to_class_log_probs
from mmtune.sarcasm import SARCASM_LABELS, to_bits
from tests.objectives.helpers import build, logits_and_targets

SARCASM = sorted(SARCASM_LABELS)  # image, multi, not, text: the inferred (sorted) order


@pytest.mark.parametrize("call", [
    lambda: build("bits", [6, 3, 1], ["a", "b", "c"]),
    lambda: bits_to_class_log_probs(torch.zeros(1, 2), ["not-sarcasm", "sarcasm"]),
    lambda: get_objective("bits").check_labels(["not-sarcasm", "sarcasm"]),
])
def test_other_labels_name_the_key_and_the_four_labels(call):
    with pytest.raises(InputError, match=r"train\.loss=bits needs the 4 sarcasm labels") as error:
        call()
    assert "\n" not in str(error.value)


def test_bits_log_probs_are_a_distribution_of_independent_bits():
    bit_logits = torch.tensor([[2.0, -1.0], [-1.0, -2.0], [-3.0, 4.0], [80.0, -80.0]])
    log_probs = bits_to_class_log_probs(bit_logits, SARCASM)
    assert log_probs.shape == (4, 4) and torch.isfinite(log_probs).all()
    torch.testing.assert_close(log_probs.exp().sum(dim=1), torch.ones(4))
    # P(class) = P(text bit = the class's) * P(image bit = the class's), the bits read with a plain sigmoid.
    p = torch.sigmoid(bit_logits.double())
    expected = torch.stack([(p[:, 0] if t else 1 - p[:, 0]) * (p[:, 1] if i else 1 - p[:, 1])
                            for t, i in map(to_bits, SARCASM)], dim=1)
    torch.testing.assert_close(log_probs.exp().double(), expected, atol=1e-6, rtol=0)
    assert [SARCASM[k] for k in log_probs.argmax(dim=1)] == ["text-sarcasm", "not-sarcasm", "image-sarcasm",
                                                             "text-sarcasm"]
    torch.testing.assert_close(get_objective("bits").class_log_probs(bit_logits, SARCASM), log_probs)


@pytest.mark.parametrize("labels", [SARCASM, list(SARCASM_LABELS)])
def test_bits_loss_is_bce_on_the_label_bits(labels):
    targets = torch.arange(4)
    bit_logits, _ = logits_and_targets(batch=4, classes=2)
    bits = torch.tensor([to_bits(labels[k]) for k in targets], dtype=torch.float32)
    torch.testing.assert_close(BitsLoss(labels, None)(bit_logits, targets),
                               F.binary_cross_entropy_with_logits(bit_logits, bits))
    pos_weight = torch.tensor([2.0, 0.5])
    torch.testing.assert_close(BitsLoss(labels, pos_weight)(bit_logits, targets),
                               F.binary_cross_entropy_with_logits(bit_logits, bits, pos_weight=pos_weight))


def test_bits_loss_gradient_flows_and_class_weights_weight_posts():
    bit_logits = torch.zeros(2, 2, requires_grad=True)
    targets = torch.tensor([SARCASM.index("text-sarcasm"), SARCASM.index("not-sarcasm")])
    loss = BitsLoss(SARCASM, None, class_weight=torch.tensor([1.0, 1.0, 1.0, 3.0]))(bit_logits, targets)
    loss.backward()
    assert bit_logits.grad is not None and bit_logits.grad.abs().sum() > 0
    # The text-sarcasm post has 3x the weight of the not-sarcasm post: its text-bit gradient is 3x larger.
    assert float(bit_logits.grad[0, 0]) == pytest.approx(-3 * float(bit_logits.grad[1, 0]))
