"""The report's figures as PNG bytes: learning curves, confusion matrix, per-class F1, reliability, fold spread."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # why: reports are written on machines without a display
    import matplotlib.pyplot as plt

    return plt


def _png(figure: Any) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def learning_curves(histories: Mapping[str, Sequence[dict[str, Any]]], metric: str) -> bytes:
    """Train loss and validation metric against optimizer steps, one line per run (fold)."""
    plt = _pyplot()
    figure, (loss_axis, metric_axis) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, history in histories.items():
        steps = [record["step"] for record in history]
        losses = [record.get("train_loss") if record.get("train_loss") is not None else np.nan for record in history]
        loss_axis.plot(steps, losses, "o-", markersize=3, label=name)
        metric_axis.plot(steps, [record.get(metric, np.nan) for record in history], "s-", markersize=3, label=name)
    loss_axis.set(title="train loss", xlabel="optimizer step")
    metric_axis.set(title=f"validation {metric}", xlabel="optimizer step")
    if len(histories) > 1:
        metric_axis.legend(fontsize=8)
    return _png(figure)


def confusion(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> bytes:
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5.2, 4.6))
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=list(labels)).plot(
        ax=axis, cmap="Blues", colorbar=False, xticks_rotation=30)
    axis.set(title="confusion matrix (rows: gold)")
    return _png(figure)


def per_class_f1(per_class: Mapping[str, Mapping[str, float]]) -> bytes:
    plt = _pyplot()
    labels = list(per_class)
    figure, axis = plt.subplots(figsize=(5.6, 3.6))
    bars = axis.bar(labels, [per_class[label]["f1"] for label in labels], color="tab:blue")
    axis.bar_label(bars, fmt="%.2f", fontsize=8)
    axis.set(title="F1 per class", ylim=(0, 1.05))
    axis.tick_params(axis="x", rotation=20)
    return _png(figure)


def reliability(probs: np.ndarray, targets: np.ndarray, bins: int = 10) -> bytes:
    """Top-class confidence against how often the top class is right (scikit-learn's calibration_curve)."""
    from sklearn.calibration import calibration_curve

    plt = _pyplot()
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == targets).astype(int)
    figure, axis = plt.subplots(figsize=(4.6, 4.2))
    axis.plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    if len(np.unique(correct)) > 1:
        observed, predicted = calibration_curve(correct, confidence, n_bins=bins, strategy="uniform")
        axis.plot(predicted, observed, "o-", color="tab:red", label="model")
    axis.hist(confidence, bins=bins, range=(0, 1), weights=np.full(len(confidence), 1 / len(confidence)),
              alpha=0.25, color="tab:blue", label="share of posts")
    axis.set(title="reliability (top class)", xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    axis.legend(fontsize=8, loc="upper left")
    return _png(figure)


def fold_spread(macro_f1: Mapping[str, float], per_class: Mapping[str, Sequence[float]]) -> bytes:
    """Each fold's macro-F1 and per-class F1 as points over a box: how much the split alone moves the score."""
    plt = _pyplot()
    names = ["macro-F1", *per_class]
    values = [list(macro_f1.values()), *(list(v) for v in per_class.values())]
    figure, axis = plt.subplots(figsize=(6.4, 3.6))
    axis.boxplot(values, showfliers=False)
    axis.set_xticks(range(1, len(names) + 1), names)
    for position, column in enumerate(values, start=1):
        axis.scatter(np.full(len(column), position), column, color="tab:red", zorder=3, s=14)
    axis.set(title=f"spread over {len(values[0])} folds", ylim=(0, 1.05))
    axis.tick_params(axis="x", rotation=20)
    return _png(figure)
