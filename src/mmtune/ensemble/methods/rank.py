"""`rank`: a rank average that stays a probability blend (quantile mapping).

Averaging raw per-class ranks and taking the argmax compares ranks across classes: a rare class's column ranks
the posts as widely as a common one's, so the argmax hands the rare class far more posts than its probabilities
would. Here each member's probability of a class becomes its quantile among that member's OOF probabilities of
the class (scale-free: suits badly calibrated members); the members' quantiles are averaged; and the average
is mapped back through the members' mean quantile function of that class, so each class keeps the scale of
its probabilities. Members that agree give back their own probabilities. The quantile grids are fitted on
the OOF rows (no gold labels read) and saved, so a file of any size, one post too, is blended the same way.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from mmtune.ensemble.methods import Method, StateError, check_members, normalized, saved_numbers

GRID = np.linspace(0.0, 1.0, 101)


class RankBlender(BaseEstimator):
    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> RankBlender:
        X = check_members(X)
        # [M, K, len(GRID)]: each member's quantile function of each class over the OOF rows.
        self.quantiles_ = np.moveaxis(np.quantile(X, GRID, axis=0), 0, -1)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = check_members(X)
        members, classes = self.quantiles_.shape[:2]
        levels = np.empty(X.shape)
        for m in range(members):
            for k in range(classes):
                levels[:, m, k] = np.interp(X[:, m, k], self.quantiles_[m, k], GRID)
        reference = self.quantiles_.mean(axis=0)  # [K, len(GRID)]
        mean_level = levels.mean(axis=1)
        probs = np.stack([np.interp(mean_level[:, k], GRID, reference[k]) for k in range(classes)], axis=1)
        return normalized(np.clip(probs, 1e-12, None))


def _save(blender: RankBlender) -> dict[str, list]:
    return {"quantiles": blender.quantiles_.tolist()}


def _load(state: dict, members: int, labels: int) -> RankBlender:
    quantiles = saved_numbers(state, "quantiles", (members, labels, len(GRID)))
    if (np.diff(quantiles, axis=-1) < 0).any() or (quantiles < 0).any() or (quantiles > 1).any():
        raise StateError("quantiles", "must be increasing probabilities in [0, 1] along each grid")
    blender = RankBlender()
    blender.quantiles_ = quantiles
    return blender


METHOD = Method(build=lambda seed: RankBlender(), rules_base=True, save=_save, load=_load)
