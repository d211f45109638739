import numpy as np
import pytest

from mmtune.ensemble.methods import get_method
from mmtune.ensemble.methods.auto import CANDIDATES, AutoBlender, one_post
from mmtune.evaluation.calibration import macro_f1
from tests.ensemble.methods.conftest import member


def test_auto_keeps_the_good_input_alone_when_the_other_is_noise(good_and_weak):
    X, targets, folds = good_and_weak
    rng = np.random.default_rng(5)
    noise = np.stack([X[:, 0], rng.dirichlet(np.ones(4), size=300)], axis=1)
    auto = AutoBlender().fit(noise, targets, folds)
    assert set(auto.scores_) == set(CANDIDATES)
    assert auto.scores_[auto.choice_] == max(auto.scores_.values())
    # Whatever it chose, it scores at least the good input alone on the held-out folds, and the mean does not.
    assert auto.scores_[auto.choice_] >= auto.scores_["best"] > auto.scores_["mean"]
    assert macro_f1(auto.predict_proba(noise), targets) >= macro_f1(X[:, 0], targets) - 0.02


def test_auto_blends_when_two_equal_inputs_err_independently():
    rng = np.random.default_rng(1)
    targets = rng.choice(4, size=400)
    X = np.stack([member(targets, 1.0, rng) for _ in range(3)], axis=1)
    auto = AutoBlender().fit(X, targets, np.arange(400) % 5)
    assert auto.choice_ != "best" and auto.scores_[auto.choice_] > auto.scores_["best"] + 0.03


def test_auto_is_saved_as_its_choice_and_the_chosen_state(good_and_weak):
    X, targets, folds = good_and_weak
    method = get_method("auto")
    blender = method.fit(method.build(0), X, targets, folds)
    state = method.save(blender)
    assert state["choice"] == blender.choice_
    assert state["state"] == get_method(blender.choice_).save(blender.chosen_)


def test_one_post_is_the_largest_change_relabelling_one_post_makes():
    rng = np.random.default_rng(0)
    targets = rng.choice(4, size=40, p=[0.3, 0.3, 0.3, 0.1])
    probs = rng.dirichlet(np.ones(4), size=40)
    decided = probs.argmax(axis=1)
    brute = max(abs(macro_f1(np.eye(4)[np.where(np.arange(40) == row, label, decided)], targets)
                    - macro_f1(probs, targets)) for row in range(40) for label in range(4))
    assert one_post(probs, targets) == pytest.approx(brute) and brute > 0


def test_a_near_copy_of_the_best_input_does_not_make_a_blend_worth_choosing(good_and_weak):
    X, targets, folds = good_and_weak
    rng = np.random.default_rng(2)
    copy = np.clip(X[:, 0] + rng.normal(0, 0.01, size=X[:, 0].shape), 1e-6, None)
    twins = np.stack([X[:, 0], copy / copy.sum(axis=1, keepdims=True)], axis=1)
    auto = AutoBlender().fit(twins, targets, folds)
    assert auto.choice_ == "best" and auto.margin_ == pytest.approx(2 * one_post(X[:, 0], targets))
    for name, score in auto.scores_.items():  # whatever scored higher, it was within the margin
        assert score <= auto.scores_["best"] + auto.margin_, name
