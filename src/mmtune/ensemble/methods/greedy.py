"""`greedy`: ensemble selection (Caruana et al. 2004), weights from how often each member is picked."""

from __future__ import annotations

import numpy as np

from mmtune.ensemble.methods import Method, check_members
from mmtune.ensemble.methods.mean import WeightedMeanBlender, fitted_weights, load_weights
from mmtune.evaluation.calibration import macro_f1


class GreedySelectionBlender(WeightedMeanBlender):
    """Ensemble selection (Caruana et al. 2004): add, with replacement, the member that most raises
    OOF macro-F1 of the mean; stop when none does. Weights are the selection counts."""

    def __init__(self, max_steps: int = 30) -> None:
        super().__init__(weights=None)
        self.max_steps = max_steps

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> GreedySelectionBlender:
        X = check_members(X)
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


METHOD = Method(build=lambda seed: GreedySelectionBlender(), needs_gold=True, fitted_on_gold=True, rules_base=True,
                fitted=fitted_weights, save=fitted_weights, load=load_weights)
