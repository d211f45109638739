"""`auto`: the best of the best single input, mean, weighted, greedy and stack, chosen by nested CV on the OOF rows.

Each candidate is fitted on all OOF folds but one and scored on the held-out one (ensemble/nested.py); the one
with the best held-out macro-F1 is then fitted on every OOF row. A blend replaces the best single input only when
it beats it by more than two OOF posts' worth of macro-F1 (each of the two scores compared can move by what
re-labelling one post does): smaller gains are noise, and the single input is the safer choice
(benchmarks/ensemble_guard.py: means 0.004-0.008 above the best input on OOF were 0.035-0.058 below it on test).
On a tie the simpler candidate (earlier in CANDIDATES) wins. Saved as the choice's name and the chosen method's
own state.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from mmtune.ensemble.methods import Method, StateError, check_members, get_method
from mmtune.ensemble.methods.best import BestInputBlender
from mmtune.ensemble.nested import cross_fitted
from mmtune.evaluation.calibration import macro_f1

CANDIDATES = ("best", "mean", "weighted", "greedy", "stack")


class AutoBlender(BaseEstimator):
    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> AutoBlender:
        X, y = check_members(X), np.asarray(y, dtype=int)
        self.scores_ = {name: macro_f1(self._held_out(name, X, y, groups), y) for name in CANDIDATES}
        self.choice_ = max(CANDIDATES, key=lambda name: (self.scores_[name], -CANDIDATES.index(name)))
        # The margin: what one post can do to the best input's own macro-F1 (the one "best" picks on all rows),
        # for each of the two scores compared.
        single = BestInputBlender().fit(X, y).predict_proba(X)
        self.margin_ = 2 * one_post(single, y)
        if self.scores_[self.choice_] <= self.scores_["best"] + self.margin_:
            self.choice_ = "best"
        self.chosen_ = _fit(self.choice_, self.seed, X, y, groups)
        return self

    def _held_out(self, name: str, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
        def fit_predict(fit_rows: np.ndarray, held_rows: np.ndarray) -> np.ndarray:
            inner = groups[fit_rows] if groups is not None else None
            return _fit(name, self.seed, X[fit_rows], y[fit_rows], inner).predict_proba(X[held_rows])

        return cross_fitted(fit_predict, y, groups, self.seed, X.shape[2])

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.chosen_.predict_proba(X)


def one_post(probs: np.ndarray, targets: np.ndarray) -> float:
    """The largest change of macro-F1 that re-labelling a single post can make to these predictions."""
    k = probs.shape[1]
    confusion = np.bincount(targets * k + probs.argmax(axis=1), minlength=k * k).reshape(k, k)
    base, largest = _macro_f1(confusion), 0.0
    for true, predicted in zip(*np.nonzero(confusion)):  # the change depends on the cell and the new label only
        for label in range(k):
            if label != predicted:
                moved = confusion.copy()
                moved[true, predicted] -= 1
                moved[true, label] += 1
                largest = max(largest, abs(_macro_f1(moved) - base))
    return largest


def _macro_f1(confusion: np.ndarray) -> float:
    denominator = confusion.sum(axis=0) + confusion.sum(axis=1)
    f1 = np.divide(2.0 * np.diag(confusion), denominator, out=np.zeros(len(confusion)), where=denominator > 0)
    return float(f1.mean())


def _fit(name: str, seed: int, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None) -> Any:
    method = get_method(name)
    return method.fit(method.build(seed), X, y, groups)


def _fit_with_folds(blender: AutoBlender, X: np.ndarray, y: np.ndarray | None, groups: np.ndarray | None) -> Any:
    return blender.fit(X, y, groups)


def _fitted(blender: AutoBlender) -> dict[str, Any]:
    """The choice, every candidate's held-out macro-F1 and what the chosen method reports (its weights)."""
    return {"auto": {"choice": blender.choice_, "nested_cv_macro_f1": dict(blender.scores_),
                     "margin": blender.margin_}} | get_method(blender.choice_).fitted(blender.chosen_)


def _save(blender: AutoBlender) -> dict[str, Any]:
    return {"choice": blender.choice_, "state": get_method(blender.choice_).save(blender.chosen_)}


def _load(state: dict, members: int, labels: int) -> AutoBlender:
    choice, inner = state.get("choice"), state.get("state")
    if choice not in CANDIDATES:
        raise StateError("choice", f"must be one of {list(CANDIDATES)}")
    if not isinstance(inner, dict):
        raise StateError("state", f"must be the saved state of method '{choice}' (an object)")
    try:
        chosen = get_method(choice).load(inner, members, labels)
    except StateError as exc:
        raise StateError(f"state.{exc.key}", exc.reason) from None
    blender = AutoBlender()
    blender.choice_, blender.chosen_ = choice, chosen
    return blender


METHOD = Method(build=lambda seed: AutoBlender(seed=seed), needs_gold=True, fitted_on_gold=True, fit=_fit_with_folds,
                fitted=_fitted, save=_save, load=_load)
