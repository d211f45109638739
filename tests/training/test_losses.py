import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight

from mmtune.data.labels import SARCASM_LABELS, bit_probs_to_class_probs, to_bits
from mmtune.errors import InputError
from mmtune.training.losses import (
    BitsLoss,
    FocalLoss,
    bits_to_class_log_probs,
    build_loss,
    class_log_probs,
    class_weights,
    loss_output_size,
)

SARCASM = sorted(SARCASM_LABELS)  # image, multi, not, text: the inferred (sorted) order
VIMMSD_COUNTS = {"not-sarcasm": 6062, "multi-sarcasm": 4224, "image-sarcasm": 442, "text-sarcasm": 77}
COUNTS = [6, 3, 1]


def _logits_and_targets(batch: int = 16, classes: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, classes, generator=generator) * 2
    return logits, torch.randint(0, classes, (batch,), generator=generator)


@pytest.mark.parametrize(("scheme", "raw"), [
    ("none", [1.0, 1.0, 1.0]),
    ("inverse", [1 / 6, 1 / 3, 1.0]),
    ("sqrt_inverse", [1 / math.sqrt(6), 1 / math.sqrt(3), 1.0]),
    # beta = 0.5: (1 - b) / (1 - b^n) = 0.5 / (63/64), 0.5 / (7/8), 0.5 / 0.5
    ("effective_number", [32 / 63, 4 / 7, 1.0]),
])
def test_class_weight_formulae(scheme, raw):
    scale = sum(COUNTS) / sum(w * n for w, n in zip(raw, COUNTS))
    weights = class_weights(COUNTS, scheme, beta=0.5)
    torch.testing.assert_close(weights, torch.tensor([w * scale for w in raw]))


@pytest.mark.parametrize("scheme", ["none", "inverse", "sqrt_inverse", "effective_number"])
@pytest.mark.parametrize("counts", [COUNTS, list(VIMMSD_COUNTS.values()), [5, 5]])
def test_mean_weight_per_sample_is_one(scheme, counts):
    weights = class_weights(counts, scheme).double()
    assert float((weights * torch.tensor(counts, dtype=torch.float64)).sum() / sum(counts)) == pytest.approx(1.0)


def test_inverse_is_sklearn_balanced_and_ranks_rare_classes_highest():
    counts = list(VIMMSD_COUNTS.values())
    targets = np.repeat(np.arange(4), counts)
    expected = compute_class_weight("balanced", classes=np.arange(4), y=targets)
    np.testing.assert_allclose(class_weights(counts, "inverse").numpy(), expected, rtol=1e-6)
    for scheme in ("inverse", "sqrt_inverse", "effective_number"):
        weights = class_weights(counts, scheme)
        assert torch.equal(torch.argsort(weights), torch.tensor([0, 1, 2, 3])), scheme


def test_effective_number_moves_from_uniform_to_inverse_as_beta_grows():
    counts = list(VIMMSD_COUNTS.values())
    torch.testing.assert_close(class_weights(counts, "effective_number", beta=0.0), torch.ones(4))
    torch.testing.assert_close(class_weights(counts, "effective_number", beta=1 - 1e-9),
                               class_weights(counts, "inverse"), rtol=1e-4, atol=1e-4)


def test_empty_class_gets_zero_weight_with_a_warning():
    with pytest.warns(UserWarning, match="no training examples"):
        weights = class_weights([4, 0, 2], "inverse")
    assert weights[1] == 0 and float(weights[0] * 4 + weights[2] * 2) == pytest.approx(6.0)


@pytest.mark.parametrize(("call", "key"), [
    (lambda: class_weights(COUNTS, "balanced"), "train.class_weights"),
    (lambda: class_weights(COUNTS, "effective_number", beta=1.0), "train.effective_number_beta"),
    (lambda: build_loss("hinge", COUNTS, ["a", "b", "c"]), "train.loss"),
    (lambda: loss_output_size("hinge", 3), "train.loss"),
    (lambda: build_loss("ce", COUNTS, ["a", "b", "c"], label_smoothing=1.5), "train.label_smoothing"),
    (lambda: FocalLoss(gamma=-1.0), "train.focal_gamma"),
    (lambda: build_loss("bits", COUNTS, ["a", "b", "c"]), "train.loss=bits needs the 4 sarcasm labels"),
    (lambda: bits_to_class_log_probs(torch.zeros(1, 2), ["not-sarcasm", "sarcasm"]), "train.loss=bits"),
])
def test_bad_config_names_the_key(call, key):
    with pytest.raises(InputError, match=key.replace("[", r"\[")) as error:
        call()
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(("alpha", "smoothing"), [(None, 0.0), (None, 0.1), ([0.5, 1.0, 2.0, 4.0], 0.0),
                                                  ([0.5, 1.0, 2.0, 4.0], 0.2)])
def test_focal_with_gamma_zero_is_cross_entropy(alpha, smoothing):
    logits, targets = _logits_and_targets()
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


@pytest.mark.parametrize("scheme", ["none", "inverse"])
def test_ce_label_smoothing_and_weights_are_torchs(scheme):
    logits, targets = _logits_and_targets()
    counts = [50, 30, 15, 5]
    loss = build_loss("ce", counts, ["a", "b", "c", "d"], class_weights=scheme, label_smoothing=0.1)
    weight = None if scheme == "none" else class_weights(counts, scheme)
    torch.testing.assert_close(loss(logits, targets),
                               F.cross_entropy(logits, targets, weight=weight, label_smoothing=0.1))


def test_focal_alpha_comes_from_the_class_weight_scheme():
    counts = list(VIMMSD_COUNTS.values())
    assert build_loss("focal", counts, list(VIMMSD_COUNTS), gamma=1.0).alpha is None
    focal = build_loss("focal", counts, list(VIMMSD_COUNTS), class_weights="sqrt_inverse", gamma=1.0)
    torch.testing.assert_close(focal.alpha, class_weights(counts, "sqrt_inverse"))
    assert focal.gamma == 1.0


def test_bits_log_probs_are_a_distribution_that_matches_the_numpy_mapping():
    bit_logits = torch.tensor([[2.0, -1.0], [-1.0, -2.0], [-3.0, 4.0], [80.0, -80.0]])
    log_probs = bits_to_class_log_probs(bit_logits, SARCASM)
    assert log_probs.shape == (4, 4) and torch.isfinite(log_probs).all()
    torch.testing.assert_close(log_probs.exp().sum(dim=1), torch.ones(4))
    p = torch.sigmoid(bit_logits.double()).numpy()
    expected = bit_probs_to_class_probs(p[:, 0], p[:, 1], SARCASM)
    np.testing.assert_allclose(log_probs.exp().numpy(), expected, atol=1e-6)
    assert [SARCASM[k] for k in log_probs.argmax(dim=1)] == ["text-sarcasm", "not-sarcasm", "image-sarcasm",
                                                             "text-sarcasm"]
    torch.testing.assert_close(class_log_probs("bits", bit_logits, SARCASM), log_probs)


@pytest.mark.parametrize("labels", [SARCASM, list(SARCASM_LABELS)])
def test_bits_loss_is_bce_on_the_label_bits(labels):
    targets = torch.arange(4)
    bit_logits, _ = _logits_and_targets(batch=4, classes=2)
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


@pytest.mark.parametrize(("name", "labels", "size"), [
    ("ce", SARCASM, 4), ("focal", ["a", "b"], 2), ("bits", SARCASM, 2)])
def test_output_size_and_class_log_probs(name, labels, size):
    assert loss_output_size(name, len(labels)) == size
    outputs, _ = _logits_and_targets(batch=3, classes=size)
    log_probs = class_log_probs(name, outputs, labels)
    assert log_probs.shape == (3, len(labels))
    torch.testing.assert_close(log_probs.exp().sum(dim=1), torch.ones(3))


@pytest.mark.parametrize(("name", "options"), [
    ("ce", {}), ("ce", {"class_weights": "inverse", "label_smoothing": 0.1}),
    ("focal", {"gamma": 2.0}), ("focal", {"class_weights": "effective_number", "gamma": 1.0}),
    ("bits", {}), ("bits", {"class_weights": "sqrt_inverse", "label_smoothing": 0.05}),
])
def test_a_few_sgd_steps_lower_each_loss(name, options):
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(64, 8, generator=generator)
    targets = torch.randint(0, 4, (64,), generator=generator)
    counts = torch.bincount(targets, minlength=4).tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every class is present: no empty-class warning expected
        loss_fn = build_loss(name, counts, SARCASM, **options)
    model = torch.nn.Linear(8, loss_output_size(name, 4))
    torch.nn.init.normal_(model.weight, generator=generator)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(10):
        optimizer.zero_grad()
        loss = loss_fn(model(features), targets)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
