"""`best`: the single input with the best OOF macro-F1, alone (the choice a blend has to beat)."""

from __future__ import annotations

import numpy as np

from mmtune.ensemble.methods import Method, check_members
from mmtune.ensemble.methods.mean import WeightedMeanBlender, fitted_weights, load_weights
from mmtune.evaluation.calibration import macro_f1


class BestInputBlender(WeightedMeanBlender):
    """All the weight on the member with the best OOF macro-F1 (the first of equals)."""

    def __init__(self) -> None:
        super().__init__(weights=None)

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> BestInputBlender:
        X = check_members(X)
        scores = [macro_f1(X[:, m], y) for m in range(X.shape[1])]
        self.weights_ = np.eye(X.shape[1])[int(np.argmax(scores))]
        return self


METHOD = Method(build=lambda seed: BestInputBlender(), needs_gold=True, fitted_on_gold=True, rules_base=True,
                fitted=fitted_weights, save=fitted_weights, load=load_weights)
