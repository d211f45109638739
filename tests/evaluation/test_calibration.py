"""Macro-F1 calibration: never lowers OOF macro-F1, the same map on any rows, an honest nested estimate."""

import numpy as np
import pytest
from sklearn.metrics import f1_score

from mmtune.evaluation.calibration import MacroF1Calibrator, fit_temperature, macro_f1, nested_gain
from mmtune.evaluation.metrics import evaluate_probs


def skewed_oof(n=400, seed=0):
    """A model biased against rare classes: the argmax misses them, a per-class bias recovers them."""
    rng = np.random.default_rng(seed)
    targets = rng.choice(4, size=n, p=[0.55, 0.3, 0.1, 0.05])
    logits = rng.normal(0, 1.0, size=(n, 4))
    logits[np.arange(n), targets] += 1.6
    logits += np.log([0.55, 0.3, 0.1, 0.05]) * 1.5  # the prior pushed too hard
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return probs, targets


@pytest.mark.parametrize("seed", range(6))
def test_calibration_never_lowers_oof_macro_f1(seed):
    probs, targets = skewed_oof(seed=seed)
    rng = np.random.default_rng(seed)
    # Also on noise, where no bias helps: the fitted map must then keep the score.
    for p in (probs, rng.dirichlet(np.ones(4), size=len(targets))):
        calibrator = MacroF1Calibrator().fit(p, targets)
        assert macro_f1(calibrator.predict_proba(p), targets) >= macro_f1(p, targets) - 1e-12
        assert calibrator.macro_f1_after_ >= calibrator.macro_f1_before_


def test_biases_raise_rare_class_f1_on_skewed_predictions():
    probs, targets = skewed_oof()
    calibrator = MacroF1Calibrator().fit(probs, targets)
    assert calibrator.macro_f1_after_ > calibrator.macro_f1_before_ + 0.05
    assert calibrator.biases_[3] > 0  # the rarest class is pushed up
    labels = ["a", "b", "c", "d"]
    before = evaluate_probs(probs, targets, labels)["per_class"]["d"]["f1"]
    after = evaluate_probs(calibrator.predict_proba(probs), targets, labels)["per_class"]["d"]["f1"]
    assert after > before


def test_the_same_map_applies_to_test_rows_in_any_order():
    probs, targets = skewed_oof()
    calibrator = MacroF1Calibrator().fit(probs, targets)
    order = np.random.default_rng(1).permutation(len(probs))
    np.testing.assert_allclose(calibrator.predict_proba(probs[order]), calibrator.predict_proba(probs)[order])
    np.testing.assert_allclose(calibrator.predict_proba(probs).sum(axis=1), 1.0)


def test_temperature_recovers_a_known_scale():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, size=(3000, 3))
    targets = np.array([rng.choice(3, p=np.exp(row) / np.exp(row).sum()) for row in logits])
    assert fit_temperature(logits * 3.0, targets) == pytest.approx(3.0, rel=0.15)


def test_nested_gain_does_not_report_an_overfit_gain_on_noise():
    rng = np.random.default_rng(0)
    targets = rng.choice(4, size=200)  # balanced classes, probabilities without signal
    probs = rng.dirichlet(np.ones(4), size=200)
    calibrator = MacroF1Calibrator().fit(probs, targets)
    in_sample = calibrator.macro_f1_after_ - calibrator.macro_f1_before_
    nested = nested_gain(probs, targets, k=5, seed=0)
    assert in_sample > 0.01 and nested["gain"] <= 0  # the biases fit the noise; held-out rows see no gain


def test_nested_gain_confirms_a_real_gain_and_scores_by_given_folds():
    probs, targets = skewed_oof()
    nested = nested_gain(probs, targets, groups=np.arange(len(targets)) % 5)
    assert nested["macro_f1_before"] == pytest.approx(macro_f1(probs, targets))
    assert nested["gain"] > 0.03


def test_macro_f1_equals_scikit_learn_with_absent_classes():
    rng = np.random.default_rng(0)
    for n in (1, 7, 300):
        targets = rng.choice(3, size=n)  # label 3 never occurs in gold
        probs = rng.dirichlet(np.ones(4), size=n)
        expected = f1_score(targets, probs.argmax(axis=1), labels=range(4), average="macro", zero_division=0)
        assert macro_f1(probs, targets) == pytest.approx(expected)
