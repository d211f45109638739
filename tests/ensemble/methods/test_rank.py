import numpy as np

from mmtune.ensemble.methods.rank import RankBlender
from mmtune.evaluation.calibration import macro_f1
from tests.ensemble.methods.conftest import member


def test_members_that_agree_give_back_their_probabilities(good_and_weak):
    X, _, _ = good_and_weak
    same = np.stack([X[:, 0], X[:, 0]], axis=1)
    np.testing.assert_allclose(RankBlender().fit(same).predict_proba(same), X[:, 0], atol=1e-9)


def test_a_members_scale_changes_nothing_within_a_class(good_and_weak):
    X, _, _ = good_and_weak
    blended = RankBlender().fit(X).predict_proba(X)
    np.testing.assert_allclose(blended.sum(axis=1), 1.0)
    squashed = X.copy()
    squashed[:, 1] = squashed[:, 1] ** 3  # a monotone change of one member's scale keeps its quantile levels
    again = RankBlender().fit(squashed)
    levels = [np.interp(squashed[:, 1, k], again.quantiles_[1, k], np.linspace(0, 1, 101)) for k in range(4)]
    first = RankBlender().fit(X)
    np.testing.assert_allclose(levels, [np.interp(X[:, 1, k], first.quantiles_[1, k], np.linspace(0, 1, 101))
                                        for k in range(4)], atol=0.01)  # up to the grid's linear interpolation


def test_rank_blending_does_not_favour_a_rare_class():
    # 400 posts, 8 of them in the rare class 3: two decent members that rarely predict it.
    rng = np.random.default_rng(0)
    targets = np.array([3] * 8 + list(rng.choice(3, size=392, p=[0.3, 0.3, 0.4])))
    prior = np.log([0.3, 0.3, 0.38, 0.02])
    X = np.stack([member(targets, 2.0, rng, prior), member(targets, 2.0, rng, prior)], axis=1)
    members_rare = max(int((X[:, m].argmax(axis=1) == 3).sum()) for m in range(2))
    # The per-class rank average (the old `rank`): a rare class's column ranks the posts as widely as any other.
    naive = (np.argsort(np.argsort(X, axis=0), axis=0) / 400).mean(axis=1)
    assert (naive.argmax(axis=1) == 3).sum() > 4 * members_rare  # the failure this test guards against is real
    blended = RankBlender().fit(X).predict_proba(X)
    assert (blended.argmax(axis=1) == 3).sum() <= 2 * members_rare
    assert macro_f1(blended, targets) >= min(macro_f1(X[:, m], targets) for m in range(2))
