"""`weighted`: the weighted mean, with weights on the simplex that minimize the OOF log-loss."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import softmax

from mmtune.ensemble.methods import Method, check_members
from mmtune.ensemble.methods.mean import WeightedMeanBlender, fitted_weights, load_weights
from mmtune.evaluation.metrics import PROB_CLIP


class LogLossWeightsBlender(WeightedMeanBlender):
    """Weights on the simplex that minimize the OOF log-loss of the weighted mean (smooth, hard to overfit)."""

    def __init__(self) -> None:
        super().__init__(weights=None)

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> LogLossWeightsBlender:
        X = check_members(X)
        # Each member's probability of the gold label: the log-loss of any weighted mean needs only these
        # (and the rows' totals, 1 for every member's distribution).
        gold = X[np.arange(len(X)), :, np.asarray(y, dtype=int)]
        totals = X.sum(axis=2)

        def loss(theta: np.ndarray) -> float:
            weights = softmax(theta)
            return float(-np.log(np.clip((gold @ weights) / (totals @ weights), PROB_CLIP, 1.0)).mean())

        found = minimize(loss, np.zeros(X.shape[1]), method="L-BFGS-B")
        self.weights_ = softmax(found.x)
        return self


METHOD = Method(build=lambda seed: LogLossWeightsBlender(), needs_gold=True, fitted_on_gold=True, rules_base=True,
                fitted=fitted_weights, save=fitted_weights, load=load_weights)
