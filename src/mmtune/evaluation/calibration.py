"""Calibration fitted on out-of-fold predictions: temperature scaling, then per-class logit biases for macro-F1.

Temperature scaling (one scalar, fitted by log-loss) makes the probabilities honest without moving any
argmax. The biases move decisions: macro-F1 rewards recall on rare classes more than the argmax of a
model trained for the loss gives, so a bias per class is searched, one class at a time, over a grid,
keeping a change only when the OOF macro-F1 rises: the fitted biases never score below no biases.
That in-sample gain is optimistic; `nested_gain` fits the biases on k-1 parts of the OOF rows and
scores the held-out part, which is the number to believe.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.model_selection import StratifiedKFold

from mmtune.errors import InputError

LOG_CLIP = 1e-12
BIAS_GRID = np.linspace(-3.0, 3.0, 61)


def _logits(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), LOG_CLIP, 1.0))


def macro_f1(probs_or_logits: np.ndarray, targets: np.ndarray) -> float:
    """Macro-F1 of the argmax over all K labels, as scikit-learn's f1_score(average="macro", labels=range(K)).

    Why not f1_score itself: the bias search and greedy selection call this thousands of times, and
    f1_score's input validation costs ~1 ms a call against ~20 us here (tests check both agree).
    """
    k = probs_or_logits.shape[1]
    predicted = probs_or_logits.argmax(axis=1)
    confusion = np.bincount(targets * k + predicted, minlength=k * k).reshape(k, k)
    true_positive = np.diag(confusion).astype(np.float64)
    denominator = confusion.sum(axis=0) + confusion.sum(axis=1)
    f1 = np.divide(2 * true_positive, denominator, out=np.zeros(k), where=denominator > 0)
    return float(f1.mean())


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The temperature T minimizing the log-loss of softmax(logits / T)."""
    def nll(log_t: float) -> float:
        scaled = log_softmax(logits / np.exp(log_t), axis=1)
        return float(-scaled[np.arange(len(targets)), targets].mean())

    found = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(found.x))


def fit_biases(logits: np.ndarray, targets: np.ndarray, rounds: int = 3) -> np.ndarray:
    """Per-class additive biases by coordinate ascent on macro-F1; a change is kept only when it helps."""
    biases = np.zeros(logits.shape[1])
    best = macro_f1(logits, targets)
    for _ in range(rounds):
        improved = False
        for k in range(1, logits.shape[1]):  # biases are defined up to a constant: class 0 stays at 0
            for value in BIAS_GRID:
                trial = biases.copy()
                trial[k] = value
                score = macro_f1(logits + trial, targets)
                if score > best + 1e-12:
                    best, biases, improved = score, trial, True
        if not improved:
            break
    return biases


@dataclass
class MacroF1Calibrator:
    """scikit-learn style: `fit(probs, targets)`, then `predict_proba(probs)` applies the same map to any rows."""

    biases: bool = True

    def fit(self, probs: np.ndarray, targets: np.ndarray) -> MacroF1Calibrator:
        probs, targets = _check(probs, targets)
        logits = _logits(probs)
        self.temperature_ = fit_temperature(logits, targets)
        scaled = logits / self.temperature_
        self.biases_ = fit_biases(scaled, targets) if self.biases else np.zeros(probs.shape[1])
        self.macro_f1_before_ = macro_f1(probs, targets)
        self.macro_f1_after_ = macro_f1(scaled + self.biases_, targets)
        return self

    def predict_proba(self, probs: np.ndarray) -> np.ndarray:
        if not hasattr(self, "biases_"):
            raise RuntimeError("MacroF1Calibrator is not fitted")
        probs = np.asarray(probs, dtype=np.float64)
        if probs.ndim != 2 or probs.shape[1] != len(self.biases_):
            raise InputError(f"calibration: expected [N, {len(self.biases_)}] probabilities, got {probs.shape}")
        return softmax(_logits(probs) / self.temperature_ + self.biases_, axis=1)

    @classmethod
    def restored(cls, temperature: float, biases: np.ndarray) -> MacroF1Calibrator:
        """A calibrator fitted before (a saved ensemble's): the same map from its temperature and biases."""
        calibrator = cls(biases=bool(np.any(biases)))
        calibrator.temperature_, calibrator.biases_ = float(temperature), np.asarray(biases, dtype=np.float64)
        return calibrator

    def to_dict(self, labels: list[str]) -> dict[str, Any]:
        return {"temperature": self.temperature_, "biases": dict(zip(labels, map(float, self.biases_))),
                "oof_macro_f1_before": self.macro_f1_before_, "oof_macro_f1_after": self.macro_f1_after_}


def _check(probs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs, targets = np.asarray(probs, dtype=np.float64), np.asarray(targets, dtype=int)
    if probs.ndim != 2 or targets.shape != (len(probs),) or len(probs) == 0:
        raise InputError(f"calibration: needs [N, K] probabilities and N gold labels, got {probs.shape} and "
                         f"{targets.shape}")
    return probs, targets


def nested_gain(probs: np.ndarray, targets: np.ndarray, k: int = 5, seed: int = 0,
                groups: np.ndarray | None = None) -> dict[str, float]:
    """Macro-F1 of the held-out parts with and without a calibrator fitted on the other parts.

    With `groups` (the cv folds) each calibrator is scored on a fold it never saw; otherwise the rows
    are split by a stratified k-fold.
    """
    probs, targets = _check(probs, targets)
    calibrated = np.empty_like(probs)
    for fit_rows, held_rows in row_splits(targets, k, seed, groups):
        calibrator = MacroF1Calibrator().fit(probs[fit_rows], targets[fit_rows])
        calibrated[held_rows] = calibrator.predict_proba(probs[held_rows])
    before, after = macro_f1(probs, targets), macro_f1(calibrated, targets)
    return {"macro_f1_before": before, "macro_f1_after": after, "gain": after - before}


def row_splits(targets: np.ndarray, k: int, seed: int,
               groups: np.ndarray | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit rows, held-out rows) per part: one part per `groups` value (the cv folds), else a stratified k-fold."""
    if groups is not None and len(np.unique(groups)) >= 2:
        return [(np.flatnonzero(groups != g), np.flatnonzero(groups == g)) for g in np.unique(groups)]
    with warnings.catch_warnings():
        # A class rarer than k cannot be in every part; the split still works and says so in a warning.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        splitter = StratifiedKFold(n_splits=max(2, min(k, len(targets))), shuffle=True, random_state=seed)
        return list(splitter.split(np.zeros((len(targets), 1)), targets))

