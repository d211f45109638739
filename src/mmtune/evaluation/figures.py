"""The report's figures as PNG bytes: learning curves, confusion matrix, per-class F1, reliability, fold spread."""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

# Labels, run names and metric keys are data: drawn as typed, never parsed as mathtext ("$\\foo$" raises) or LaTeX.
PLAIN_TEXT = {"text.parse_math": False, "text.usetex": False}
MAX_LABEL_CHARS = 40


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # why: reports are written on machines without a display
    import matplotlib.pyplot as plt

    return plt


def plain_text(draw: Callable[..., bytes]) -> Callable[..., bytes]:
    """Draw the figure, tick labels and legend included (made at savefig), with data text taken literally."""

    @functools.wraps(draw)
    def plain(*args: Any, **kwargs: Any) -> bytes:
        with pyplot().rc_context(PLAIN_TEXT):
            return draw(*args, **kwargs)

    return plain


def short_label(label: Any) -> str:
    """A label as a tick or legend entry: one line, at most MAX_LABEL_CHARS (the page's table has it whole).

    A lone surrogate (a JSON file may hold "\\ud800") is shown escaped: FreeType cannot draw it."""
    text = " ".join(str(label).encode("utf-8", "backslashreplace").decode("utf-8").split())
    return text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 1] + "…"


def _point(value: Any) -> float:
    """A logged value as a point: anything but a number (null, text in an edited metrics.jsonl) is a gap."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else np.nan


def png_bytes(figure: Any) -> bytes:
    plt = pyplot()
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def learning_curves(histories: Mapping[str, Sequence[dict[str, Any]]], metric: str) -> bytes:
    """Train loss and validation metric against optimizer steps, one line per run (fold)."""
    return overlaid_learning_curves({name: {name: history} for name, history in histories.items()}, metric)


@plain_text
def overlaid_learning_curves(groups: Mapping[str, Mapping[str, Sequence[dict[str, Any]]]], metric: str) -> bytes:
    """Train loss and validation metric against optimizer steps: one colour per group (a run, or a cv folder
    whose folds are its lines), named once in the legend."""
    plt = pyplot()
    figure, (loss_axis, metric_axis) = plt.subplots(1, 2, figsize=(10, 3.6))
    colours = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20")
    for number, (group, histories) in enumerate(groups.items()):
        colour = colours(number % colours.N)
        for line, history in enumerate(histories.values()):
            steps = [record["step"] for record in history]
            label = short_label(group) if line == 0 else None
            loss_axis.plot(steps, [_point(r.get("train_loss")) for r in history], "o-", markersize=3, color=colour,
                           label=label)
            metric_axis.plot(steps, [_point(r.get(metric)) for r in history], "s-", markersize=3, color=colour,
                             label=label)
    loss_axis.set(title="train loss", xlabel="optimizer step")
    metric_axis.set(title=f"validation {short_label(metric)}", xlabel="optimizer step")
    if len(groups) > 1:
        metric_axis.legend(fontsize=8)
    return png_bytes(figure)


@plain_text
def confusion(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> bytes:
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = pyplot()
    figure, axis = plt.subplots(figsize=(5.2, 4.6))
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=[short_label(label) for label in labels]).plot(
        ax=axis, cmap="Blues", colorbar=False, xticks_rotation=30)
    axis.set(title="confusion matrix (rows: gold)")
    return png_bytes(figure)


@plain_text
def per_class_f1(per_class: Mapping[str, Mapping[str, float]]) -> bytes:
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(5.6, 3.6))
    # why: bar positions, not categorical labels; two labels that shorten alike would share one bar
    positions = np.arange(len(per_class))
    bars = axis.bar(positions, [row["f1"] for row in per_class.values()], color="tab:blue")
    axis.set_xticks(positions, [short_label(label) for label in per_class])
    axis.bar_label(bars, fmt="%.2f", fontsize=8)
    axis.set(title="F1 per class", ylim=(0, 1.05))
    axis.tick_params(axis="x", rotation=20)
    return png_bytes(figure)


@plain_text
def per_class_f1_compared(runs: Mapping[str, Mapping[str, float]]) -> bytes:
    """Each class's F1 of several runs, side by side (one bar per run within each class's group)."""
    plt = pyplot()
    labels = list(dict.fromkeys(label for per_class in runs.values() for label in per_class))
    figure, axis = plt.subplots(figsize=(max(6.4, 1.2 * len(labels) * max(1, len(runs)) / 3), 3.8))
    positions = np.arange(len(labels))
    width = 0.8 / max(1, len(runs))
    for number, (name, per_class) in enumerate(runs.items()):
        axis.bar(positions + (number - (len(runs) - 1) / 2) * width, [per_class.get(x, np.nan) for x in labels],
                 width, label=short_label(name))
    axis.set_xticks(positions, [short_label(label) for label in labels])
    axis.set(title="F1 per class", ylim=(0, 1.05))
    axis.tick_params(axis="x", rotation=20)
    axis.legend(fontsize=8)
    return png_bytes(figure)


@plain_text
def reliability(probs: np.ndarray, targets: np.ndarray, bins: int = 10) -> bytes:
    """Top-class confidence against how often the top class is right (scikit-learn's calibration_curve)."""
    from sklearn.calibration import calibration_curve

    plt = pyplot()
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
    return png_bytes(figure)


@plain_text
def fold_spread(macro_f1: Mapping[str, float], per_class: Mapping[str, Sequence[float]]) -> bytes:
    """Each fold's macro-F1 and per-class F1 as points over a box: how much the split alone moves the score."""
    plt = pyplot()
    names = ["macro-F1", *(short_label(label) for label in per_class)]
    values = [list(macro_f1.values()), *(list(v) for v in per_class.values())]
    figure, axis = plt.subplots(figsize=(6.4, 3.6))
    axis.boxplot(values, showfliers=False)
    axis.set_xticks(range(1, len(names) + 1), names)
    for position, column in enumerate(values, start=1):
        axis.scatter(np.full(len(column), position), column, color="tab:red", zorder=3, s=14)
    axis.set(title=f"spread over {len(values[0])} folds", ylim=(0, 1.05))
    axis.tick_params(axis="x", rotation=20)
    return png_bytes(figure)
