import numpy as np
from sklearn.tree import DecisionTreeClassifier

from mmtune.ensemble.methods import get_method
from mmtune.ensemble.methods.stack import StackingBlender, member_features
from mmtune.evaluation.calibration import macro_f1


def test_stacking_is_leak_free_with_a_label_leaking_meta_learner():
    rng = np.random.default_rng(0)
    targets = rng.choice(4, size=400)
    # Every post has its own random "probabilities": a memorizing meta-learner maps them to the label in-sample.
    X = rng.dirichlet(np.ones(4), size=(400, 3))
    tree = DecisionTreeClassifier(random_state=0)
    in_sample = tree.fit(member_features(X), targets).predict_proba(member_features(X))
    assert macro_f1(in_sample, targets) == 1.0  # the leak this test guards against is real
    stack = StackingBlender(meta=DecisionTreeClassifier(random_state=0)).fit(X, targets, groups=np.arange(400) % 5)
    assert macro_f1(stack.oof_proba_, targets) < 0.4  # chance level: each post scored by a tree that never saw it


def test_stacking_learns_from_good_members(good_and_weak):
    X, targets, folds = good_and_weak
    stack = StackingBlender().fit(X, targets, groups=folds)
    assert macro_f1(stack.oof_proba_, targets) > macro_f1(X[:, 1], targets) + 0.2
    np.testing.assert_allclose(stack.predict_proba(X).sum(axis=1), 1.0)


def test_the_method_scores_oof_rows_by_meta_learners_that_never_saw_them(good_and_weak):
    X, targets, folds = good_and_weak
    method = get_method("stack")
    blender = method.build(7)
    oof = method.fit_oof(blender, X, targets, folds)
    assert blender.seed == 7 and not method.in_sample
    np.testing.assert_array_equal(oof, blender.oof_proba_)
    assert not np.allclose(oof, blender.predict_proba(X))  # the refitted meta-learner saw every row
