import numpy as np
import pytest

from mmtune.ensemble.methods.mean import WeightedMeanBlender


def test_the_plain_mean_and_given_weights(good_and_weak):
    X, _, _ = good_and_weak
    np.testing.assert_allclose(WeightedMeanBlender().fit(X).predict_proba(X), X.mean(axis=1))
    np.testing.assert_allclose(WeightedMeanBlender(weights=[3, 1]).fit(X).weights_, [0.75, 0.25])
    with pytest.raises(ValueError, match="2 non-negative numbers"):
        WeightedMeanBlender(weights=[1, -1]).fit(X)
