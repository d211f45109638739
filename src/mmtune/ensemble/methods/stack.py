"""`stack`: a scikit-learn meta-learner (a logistic regression) on the members' OOF log-probabilities.

The meta-learner is fitted on every OOF row; its score on those rows would be in-sample, so the ensemble scores
it as it scores every method fitted on gold labels (ensemble/nested.py): each OOF fold predicted by a
meta-learner fitted on the other folds. That logistic regression is saved as its coefficients, intercepts and
classes (JSON numbers) and rebuilt from them.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression

from mmtune.ensemble.methods import Method, StateError, check_members, saved_numbers

LOG_CLIP = 1e-6


def member_features(X: np.ndarray) -> np.ndarray:
    """[N, M, K] probabilities -> [N, M*K] log-probabilities (a linear meta-learner then mixes logits)."""
    X = check_members(X)
    return np.log(np.clip(X, LOG_CLIP, 1.0)).reshape(X.shape[0], -1)


class StackingBlender(BaseEstimator, ClassifierMixin):
    def __init__(self, meta: BaseEstimator | None = None) -> None:
        self.meta = meta

    def fit(self, X: np.ndarray, y: np.ndarray) -> StackingBlender:
        self.n_classes_ = np.asarray(X).shape[2]
        meta = clone(self.meta) if self.meta is not None else LogisticRegression(C=1.0, max_iter=2000)
        self.meta_ = meta.fit(member_features(X), np.asarray(y, dtype=int))
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        # The meta-learner knows the classes present in the rows it was fitted on; spread them onto all K.
        full = np.zeros((len(X), self.n_classes_))
        full[:, self.meta_.classes_] = self.meta_.predict_proba(member_features(X))
        return full / np.clip(full.sum(axis=1, keepdims=True), 1e-12, None)


def _save(blender: StackingBlender) -> dict[str, list]:
    """The logistic regression's fitted numbers: all that its predict_proba reads."""
    meta = blender.meta_
    return {"classes": [int(c) for c in meta.classes_], "coef": meta.coef_.tolist(),
            "intercept": meta.intercept_.tolist()}


def _load(state: dict, members: int, labels: int) -> StackingBlender:
    """The stacking blender with its logistic regression rebuilt from the saved numbers."""
    classes = state.get("classes")
    if (not isinstance(classes, list) or len(classes) < 2 or classes != sorted(set(classes))
            or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < labels for c in classes)):
        raise StateError("classes", f"must be 2 or more increasing class indices in 0..{labels - 1}")
    rows = 1 if len(classes) == 2 else len(classes)  # scikit-learn keeps one row of coefficients for 2 classes
    meta = LogisticRegression(C=1.0, max_iter=2000)
    meta.coef_ = saved_numbers(state, "coef", (rows, members * labels))
    meta.intercept_ = saved_numbers(state, "intercept", (rows,))
    meta.classes_ = np.array(classes)
    meta.n_features_in_ = members * labels
    blender = StackingBlender()
    blender.meta_, blender.n_classes_ = meta, labels
    return blender


METHOD = Method(build=lambda seed: StackingBlender(), needs_gold=True, fitted_on_gold=True, save=_save, load=_load)
