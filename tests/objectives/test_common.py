import math

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight

from mmtune.errors import InputError
from mmtune.objectives._common import class_weights

VIMMSD_COUNTS = {"not-sarcasm": 6062, "multi-sarcasm": 4224, "image-sarcasm": 442, "text-sarcasm": 77}
COUNTS = [6, 3, 1]


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
])
def test_bad_weight_settings_name_the_key(call, key):
    with pytest.raises(InputError, match=key) as error:
        call()
    assert "\n" not in str(error.value)
