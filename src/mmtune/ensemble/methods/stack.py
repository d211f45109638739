"""`stack`: a scikit-learn meta-learner on the members' OOF log-probabilities, with its own CV.

The meta-learner's OOF predictions (`oof_proba_`) come from `cross_val_predict` over the folds the
members were validated on (the OOF `fold` column), so a post is always scored by a meta-learner that
never saw it: a flexible meta-learner cannot turn memorized rows into a fake OOF score. The
meta-learner that predicts test rows is then refitted on all OOF rows. That logistic regression is saved as its
coefficients, intercepts and classes (JSON numbers) and rebuilt from them.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_val_predict

from mmtune.ensemble.methods import Method, StateError, check_members, saved_numbers

LOG_CLIP = 1e-6


def member_features(X: np.ndarray) -> np.ndarray:
    """[N, M, K] probabilities -> [N, M*K] log-probabilities (a linear meta-learner then mixes logits)."""
    X = check_members(X)
    return np.log(np.clip(X, LOG_CLIP, 1.0)).reshape(X.shape[0], -1)


class StackingBlender(BaseEstimator, ClassifierMixin):
    def __init__(self, meta: BaseEstimator | None = None, cv: int = 5, seed: int = 0) -> None:
        self.meta = meta
        self.cv = cv
        self.seed = seed

    def _meta(self) -> BaseEstimator:
        return clone(self.meta) if self.meta is not None else LogisticRegression(C=1.0, max_iter=2000)

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> StackingBlender:
        features = member_features(X)
        y = np.asarray(y, dtype=int)
        self.n_classes_ = np.asarray(X).shape[2]
        splits = self._splits(features, y, groups)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
            oof = cross_val_predict(self._meta(), features, y, cv=splits, method="predict_proba")
        # cross_val_predict orders columns by the classes present in y; spread them onto all K.
        self.oof_proba_ = self._expand(oof, np.unique(y))
        self.meta_ = self._meta().fit(features, y)
        return self

    def _splits(self, features: np.ndarray, y: np.ndarray, groups: np.ndarray | None) -> list:
        if groups is not None and len(np.unique(groups)) >= 2:
            return list(GroupKFold(n_splits=len(np.unique(groups))).split(features, y, groups))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
            return list(StratifiedKFold(n_splits=self.cv, shuffle=True, random_state=self.seed).split(features, y))

    def _expand(self, probs: np.ndarray, classes: np.ndarray) -> np.ndarray:
        full = np.zeros((len(probs), self.n_classes_))
        full[:, classes] = probs
        return full / np.clip(full.sum(axis=1, keepdims=True), 1e-12, None)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self._expand(self.meta_.predict_proba(member_features(X)), self.meta_.classes_)


def _cross_validated(blender: StackingBlender, X: np.ndarray, y: np.ndarray | None,
                     groups: np.ndarray | None) -> np.ndarray:
    # The OOF rows' ensemble predictions come from meta-learners that never saw them, not from the refit one.
    return blender.fit(X, y, groups=groups).oof_proba_


def _save(blender: StackingBlender) -> dict[str, list]:
    """The refitted logistic regression's fitted numbers: all that its predict_proba reads."""
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


METHOD = Method(build=lambda seed: StackingBlender(seed=seed), needs_gold=True, fit_oof=_cross_validated, save=_save,
                load=_load)
