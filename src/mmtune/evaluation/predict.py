"""Prediction files (the CSV contract) and prediction with a finished run.

CSV: `id,label,p_<label1>,...,p_<labelK>`; probabilities sum to 1, columns in the run's label
order; OOF files add `gold` and `fold`.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mmtune.ensemble.inputs import read_prediction_file
from mmtune.outputs import atomic_open


def write_predictions(path: str | Path, ids: Sequence[str], probs: np.ndarray, labels: Sequence[str],
                      gold: Sequence[str | None] | None = None, folds: Sequence[int] | None = None) -> None:
    path = Path(path)
    probs = np.asarray(probs, dtype=np.float64)
    probs = probs / probs.sum(axis=1, keepdims=True)
    header = ["id", "label", *(f"p_{label}" for label in labels)]
    header += ["gold"] if gold is not None else []
    header += ["fold"] if folds is not None else []
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row, (post_id, p) in enumerate(zip(ids, probs)):
            line = [post_id, labels[int(np.argmax(p))], *(f"{value:.6f}" for value in p)]
            line += [gold[row] if gold[row] is not None else ""] if gold is not None else []
            line += [folds[row]] if folds is not None else []
            writer.writerow(line)


def read_predictions(path: str | Path) -> tuple[list[str], np.ndarray, list[str]]:
    """ids, [N, K] probabilities, labels (from the p_ columns), read with the ensemble's row checks."""
    pred = read_prediction_file(path)
    return pred.ids, pred.probs, pred.labels
