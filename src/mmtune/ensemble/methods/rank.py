"""`rank`: the mean of each member's per-class ranks within the file."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata
from sklearn.base import BaseEstimator

from mmtune.ensemble.methods import Method, check_members, normalized


class RankBlender(BaseEstimator):
    """The mean of each member's per-class ranks within the file (scale-free: suits badly calibrated models)."""

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> RankBlender:
        self.n_members_ = check_members(X).shape[1]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = check_members(X)
        ranks = rankdata(X, axis=0) / X.shape[0]
        return normalized(ranks.mean(axis=1))


def _load(state: dict, members: int, labels: int) -> RankBlender:
    """Ranks are taken within the file predicted: nothing was fitted but the number of members."""
    blender = RankBlender()
    blender.n_members_ = members
    return blender


METHOD = Method(build=lambda seed: RankBlender(), rules_base=True, load=_load)
