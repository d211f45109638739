"""`mean`: the plain mean of the members (and the weighted mean that `weighted` and `greedy` fit weights for)."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from mmtune.ensemble.methods import Method, StateError, check_members, normalized, saved_numbers


class WeightedMeanBlender(BaseEstimator):
    """The weighted mean of the members; `weights=None` means equal weights (the plain mean)."""

    def __init__(self, weights: list[float] | None = None) -> None:
        self.weights = weights

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> WeightedMeanBlender:
        X = check_members(X)
        weights = np.ones(X.shape[1]) if self.weights is None else np.asarray(self.weights, dtype=np.float64)
        if weights.shape != (X.shape[1],) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"weights must be {X.shape[1]} non-negative numbers, not all 0")
        self.weights_ = weights / weights.sum()
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return normalized(np.einsum("nmk,m->nk", check_members(X), self.weights_))


def fitted_weights(blender: WeightedMeanBlender) -> dict[str, list[float]]:
    """The members' weights, for the ensemble summary."""
    return {"weights": [float(w) for w in blender.weights_]}


def load_weights(state: dict, members: int, labels: int) -> WeightedMeanBlender:
    """A weighted mean with saved weights (those `fitted_weights` reported), as fitted."""
    weights = saved_numbers(state, "weights", (members,))
    if (weights < 0).any() or weights.sum() <= 0:
        raise StateError("weights", "must be non-negative and not all 0")
    blender = WeightedMeanBlender()
    blender.weights_ = weights
    return blender


METHOD = Method(build=lambda seed: WeightedMeanBlender(), rules_base=True, fitted=fitted_weights, save=fitted_weights,
                load=load_weights)
