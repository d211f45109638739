import numpy as np

from mmtune.ensemble.methods.rank import RankBlender


def test_ranks_ignore_the_scale_of_a_member(good_and_weak):
    X, _, _ = good_and_weak
    ranks = RankBlender().fit(X).predict_proba(X)
    np.testing.assert_allclose(ranks.sum(axis=1), 1.0)
    squashed = X.copy()
    squashed[:, 1] = squashed[:, 1] ** 3  # a monotone change of one member's scale keeps its ranks
    np.testing.assert_allclose(RankBlender().fit(squashed).predict_proba(squashed), ranks)
