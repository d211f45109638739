"""Classification metrics from predicted probabilities; macro-F1 is the competition's ranking metric.

All K labels are always scored (scikit-learn gets `labels=range(K)`): a label missing from a small
validation fold then counts as F1 0 rather than vanishing from the average, so scores from folds and
runs with different label coverage stay comparable, and the confusion matrix is always K x K.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, log_loss, precision_recall_fscore_support

from mmtune.errors import InputError

METRICS = ("macro_f1", "accuracy", "weighted_f1", "balanced_accuracy", "log_loss")
LOWER_IS_BETTER = frozenset({"log_loss"})
PROB_CLIP = 1e-7


def _check_inputs(probs: np.ndarray, targets: np.ndarray, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    probs, targets = np.asarray(probs, dtype=np.float64), np.asarray(targets)
    if probs.ndim != 2 or probs.shape[1] != len(labels):
        raise ValueError(f"probabilities must have shape [N, {len(labels)}], got {probs.shape}")
    if targets.shape != (probs.shape[0],):
        raise ValueError(f"targets must have shape [{probs.shape[0]}], got {targets.shape}")
    if probs.shape[0] == 0:
        raise ValueError("no examples to evaluate")
    if not np.isfinite(probs).all():
        raise ValueError("probabilities contain NaN or infinity")
    if not np.issubdtype(targets.dtype, np.integer) or targets.min() < 0 or targets.max() >= len(labels):
        raise ValueError(f"targets must be integer label indices in [0, {len(labels)})")
    return probs, targets


def _log_loss(probs: np.ndarray, targets: np.ndarray) -> float:
    # Clip so that one confidently wrong prediction gives a large but finite loss; renormalize because
    # float32 softmax rows miss 1 by rounding and scikit-learn warns about that.
    clipped = np.clip(probs, PROB_CLIP, 1.0)
    clipped /= clipped.sum(axis=1, keepdims=True)
    return float(log_loss(targets, clipped, labels=list(range(probs.shape[1]))))


def evaluate_probs(probs: np.ndarray, targets: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """[N, K] probabilities and [N] gold indices -> JSON-ready metrics; predictions are the argmax."""
    probs, targets = _check_inputs(probs, targets, labels)
    ids = list(range(len(labels)))
    preds = probs.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(targets, preds, labels=ids, zero_division=0)
    confusion = confusion_matrix(targets, preds, labels=ids)
    present = support > 0
    return {
        "n": int(len(targets)),
        "macro_f1": float(f1_score(targets, preds, labels=ids, average="macro", zero_division=0)),
        "accuracy": float((preds == targets).mean()),
        "weighted_f1": float(f1_score(targets, preds, labels=ids, average="weighted", zero_division=0)),
        # scikit-learn's balanced_accuracy_score: mean recall over the classes that occur in the gold labels.
        "balanced_accuracy": float(recall[present].mean()),
        "log_loss": _log_loss(probs, targets),
        "per_class": {
            label: {"precision": float(precision[k]), "recall": float(recall[k]), "f1": float(f1[k]),
                    "support": int(support[k])}
            for k, label in enumerate(labels)
        },
        "confusion": confusion.astype(int).tolist(),
    }


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise InputError(f"train.metric must be one of {list(METRICS)}, got '{metric}'")


def selection_value(metrics: dict[str, Any], metric: str) -> float:
    """The value of the model-selection metric in an `evaluate_probs` result."""
    _check_metric(metric)
    return float(metrics[metric])


def is_better(metric: str, new: float, best: float | None) -> bool:
    """True when `new` strictly improves on `best` (None: nothing yet); ties keep the earlier checkpoint."""
    _check_metric(metric)
    if math.isnan(new):
        return False
    if best is None or math.isnan(best):
        return True
    return new < best if metric in LOWER_IS_BETTER else new > best
