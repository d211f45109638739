"""Blenders of M models' probabilities, with scikit-learn's estimator contract.

`X` is [N, M, K]: for each post, each member's class probabilities (rows aligned by `inputs.align`).
`fit(X, y)` learns from out-of-fold predictions (fitted attributes end in `_`), `predict_proba(X)`
returns [N, K] probabilities that sum to 1, for OOF rows or test rows alike.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import softmax
from scipy.stats import rankdata
from sklearn.base import BaseEstimator
from sklearn.metrics import log_loss

from mmtune.evaluation.calibration import macro_f1
from mmtune.evaluation.metrics import PROB_CLIP


def _check_members(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 3:
        raise ValueError(f"members must have shape [N, M, K], got {X.shape}")
    return X


def _normalized(probs: np.ndarray) -> np.ndarray:
    return probs / probs.sum(axis=1, keepdims=True)


class WeightedMeanBlender(BaseEstimator):
    """The weighted mean of the members; `weights=None` means equal weights (the plain mean)."""

    def __init__(self, weights: list[float] | None = None) -> None:
        self.weights = weights

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> WeightedMeanBlender:
        X = _check_members(X)
        weights = np.ones(X.shape[1]) if self.weights is None else np.asarray(self.weights, dtype=np.float64)
        if weights.shape != (X.shape[1],) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"weights must be {X.shape[1]} non-negative numbers, not all 0")
        self.weights_ = weights / weights.sum()
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return _normalized(np.einsum("nmk,m->nk", _check_members(X), self.weights_))


class LogLossWeightsBlender(WeightedMeanBlender):
    """Weights on the simplex that minimize the OOF log-loss of the weighted mean (smooth, hard to overfit)."""

    def __init__(self) -> None:
        super().__init__(weights=None)

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> LogLossWeightsBlender:
        X = _check_members(X)
        labels = list(range(X.shape[2]))

        def loss(theta: np.ndarray) -> float:
            blended = np.einsum("nmk,m->nk", X, softmax(theta))
            return float(log_loss(y, np.clip(_normalized(blended), PROB_CLIP, 1.0), labels=labels))

        found = minimize(loss, np.zeros(X.shape[1]), method="L-BFGS-B")
        self.weights_ = softmax(found.x)
        return self


class GreedySelectionBlender(WeightedMeanBlender):
    """Ensemble selection (Caruana et al. 2004): add, with replacement, the member that most raises
    OOF macro-F1 of the mean; stop when none does. Weights are the selection counts."""

    def __init__(self, max_steps: int = 30) -> None:
        super().__init__(weights=None)
        self.max_steps = max_steps

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> GreedySelectionBlender:
        X = _check_members(X)
        counts = np.zeros(X.shape[1])
        total = np.zeros((X.shape[0], X.shape[2]))
        best = -1.0
        for _ in range(self.max_steps):
            scores = [macro_f1(total + X[:, m], y) for m in range(X.shape[1])]
            pick = int(np.argmax(scores))
            if scores[pick] <= best:
                break
            best, counts[pick], total = scores[pick], counts[pick] + 1, total + X[:, pick]
        self.weights_ = counts / counts.sum()
        self.selection_macro_f1_ = best
        return self


class RankBlender(BaseEstimator):
    """The mean of each member's per-class ranks within the file (scale-free: suits badly calibrated models)."""

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> RankBlender:
        self.n_members_ = _check_members(X).shape[1]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = _check_members(X)
        ranks = rankdata(X, axis=0) / X.shape[0]
        return _normalized(ranks.mean(axis=1))
