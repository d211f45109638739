import numpy as np
from sklearn.tree import DecisionTreeClassifier

from mmtune.ensemble.methods.stack import StackingBlender, member_features
from mmtune.ensemble.nested import cross_fitted
from mmtune.evaluation.calibration import macro_f1


def nested(blender_of, X, targets, folds):
    return cross_fitted(lambda fit, held: blender_of().fit(X[fit], targets[fit]).predict_proba(X[held]),
                        targets, folds, 0, X.shape[2])


def test_stacking_is_scored_leak_free_with_a_label_leaking_meta_learner():
    rng = np.random.default_rng(0)
    targets = rng.choice(4, size=400)
    # Every post has its own random "probabilities": a memorizing meta-learner maps them to the label in-sample.
    X = rng.dirichlet(np.ones(4), size=(400, 3))
    tree = StackingBlender(meta=DecisionTreeClassifier(random_state=0)).fit(X, targets)
    assert macro_f1(tree.predict_proba(X), targets) == 1.0  # the leak this test guards against is real
    held_out = nested(lambda: StackingBlender(meta=DecisionTreeClassifier(random_state=0)), X, targets,
                      np.arange(400) % 5)
    assert macro_f1(held_out, targets) < 0.4  # chance level: each post scored by a tree that never saw it


def test_stacking_learns_from_good_members(good_and_weak):
    X, targets, folds = good_and_weak
    held_out = nested(StackingBlender, X, targets, folds)
    assert macro_f1(held_out, targets) > macro_f1(X[:, 1], targets) + 0.2
    np.testing.assert_allclose(StackingBlender().fit(X, targets).predict_proba(X).sum(axis=1), 1.0)


def test_a_class_missing_from_the_fitted_rows_gets_probability_zero(good_and_weak):
    X, targets, _ = good_and_weak
    rows = targets != 3
    probs = StackingBlender().fit(X[rows], targets[rows]).predict_proba(X)
    assert probs.shape == (300, 4) and (probs[:, 3] == 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert member_features(X).shape == (300, 8)
