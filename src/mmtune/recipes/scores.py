"""The scores a command ends with: `train`'s best evaluation and `predict`'s on a labelled file (the selection
metric, macro-F1 and each class's F1), and the files a run wrote."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmtune.config import load_saved_config
from mmtune.evaluation.metrics import evaluate_probs, selection_value
from mmtune.evaluation.predictions import Predictions

# What `train` may leave in its run folder (DESIGN.md), in the order a reader wants them.
RUN_FILES = ("best", "last", "metrics.jsonl", "val_predictions.csv", "test_predictions.csv", "learning_curve.png",
             "config.yaml", "folds.csv")


@dataclass
class Scores:
    metric: str  # train.metric, the one best/ is selected by
    value: float
    macro_f1: float
    per_class_f1: dict[str, float]
    posts: int
    step: int | None = None  # the optimizer step of the best evaluation
    files: list[Path] = field(default_factory=list)


def best_scores(history: list[dict[str, Any]], metric: str, best_step: int, run_dir: Path) -> Scores | None:
    """The evaluation best/ holds, from the loop's records; None when the run never evaluated."""
    record = next((r for r in reversed(history) if r["step"] == best_step and r.get("best") == r.get(metric)), None)
    if record is None:
        return None
    return Scores(metric, float(record[metric]), float(record["macro_f1"]), dict(record["per_class_f1"]),
                  int(record["n"]), step=best_step, files=run_files(run_dir))


def prediction_scores(predictions: Predictions, metric: str = "macro_f1") -> Scores | None:
    """Scores of predictions whose every post has a gold label among the model's labels; None otherwise."""
    if predictions.gold is None or not set(predictions.gold) <= set(predictions.labels):
        return None
    metrics = evaluate_probs(predictions.probs, predictions.targets(), predictions.labels)
    return Scores(metric, selection_value(metrics, metric), metrics["macro_f1"],
                  {label: row["f1"] for label, row in metrics["per_class"].items()}, metrics["n"])


def run_files(run_dir: Path) -> list[Path]:
    return [run_dir / name for name in RUN_FILES if (run_dir / name).exists()]


def run_metric(run_dir: Path) -> str:
    """The selection metric a run folder was trained with (macro-F1 for anything else, e.g. a cv folder)."""
    config = run_dir / "config.yaml"
    return load_saved_config(config).train.metric if config.is_file() else "macro_f1"
