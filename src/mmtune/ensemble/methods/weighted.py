"""`weighted`: the weighted mean, with weights on the simplex that minimize the OOF log-loss."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import softmax
from sklearn.metrics import log_loss

from mmtune.ensemble.methods import Method, check_members, normalized
from mmtune.ensemble.methods.mean import WeightedMeanBlender, fitted_weights, load_weights
from mmtune.evaluation.metrics import PROB_CLIP


class LogLossWeightsBlender(WeightedMeanBlender):
    """Weights on the simplex that minimize the OOF log-loss of the weighted mean (smooth, hard to overfit)."""

    def __init__(self) -> None:
        super().__init__(weights=None)

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> LogLossWeightsBlender:
        X = check_members(X)
        labels = list(range(X.shape[2]))

        def loss(theta: np.ndarray) -> float:
            blended = np.einsum("nmk,m->nk", X, softmax(theta))
            return float(log_loss(y, np.clip(normalized(blended), PROB_CLIP, 1.0), labels=labels))

        found = minimize(loss, np.zeros(X.shape[1]), method="L-BFGS-B")
        self.weights_ = softmax(found.x)
        return self


METHOD = Method(build=lambda seed: LogLossWeightsBlender(), needs_gold=True, in_sample=True, rules_base=True,
                fitted=fitted_weights, save=fitted_weights, load=load_weights)
