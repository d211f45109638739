"""Predictions of one file and the prediction CSV: the one reader and the one writer of it.

CSV: `id,label,p_<label1>,...,p_<labelK>`; probabilities sum to 1, columns in the run's label order, `label`
is the decision (the argmax, or what an ensemble's rules decided); OOF files add `gold` and `fold`.
Files come from teammates and Kaggle datasets, so they are read strictly (mmtune.data.csvfile) and any bad
row is bad input naming the file and line: a file of rows that do not add up would look fine and score nonsense.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mmtune.data.csvfile import CsvRows, read_table
from mmtune.errors import InputError
from mmtune.outputs import atomic_open


@dataclass
class Predictions:
    """[N, K] probabilities in `labels` order for the posts `ids`; OOF files also carry gold and fold.

    A file read for its decisions only (`read_predictions(..., decisions_only=True)`, what a submission needs)
    has `probs` None and its `label` column in `decided`.
    """

    ids: list[str]
    probs: np.ndarray | None
    labels: list[str]
    gold: list[str | None] | None = None
    folds: list[int] | None = None
    decided: list[str] | None = None
    path: Path = Path("predictions")  # where they were read from, for messages

    @property
    def predicted(self) -> list[str]:
        """The label decided for each post: the file's `label` column when only it was read, else the argmax."""
        if self.decided is not None:
            return self.decided
        return [self.labels[k] for k in self.probs.argmax(axis=1)]

    def targets(self) -> np.ndarray:
        """The gold labels as indices into `labels`."""
        return gold_indices(self.gold, self.labels, self.path)


def gold_indices(gold: list[str | None] | None, labels: list[str], path: Path) -> np.ndarray:
    index = {label: k for k, label in enumerate(labels)}
    if gold is None:
        raise InputError(f"{path}: no gold labels")
    unknown = [g for g in gold if g not in index]
    if unknown:
        raise InputError(f"{path}: gold label '{unknown[0]}' is not one of {labels}")
    return np.array([index[g] for g in gold], dtype=int)


def write_predictions(path: str | Path, preds: Predictions) -> None:
    """The CSV of `preds`, probabilities renormalized to sum to 1; gold and fold columns when they have them."""
    cells = _probability_cells(preds.probs)
    header = ["id", "label", *(f"p_{label}" for label in preds.labels)]
    header += ["gold"] if preds.gold is not None else []
    header += ["fold"] if preds.folds is not None else []
    decided = preds.predicted
    with atomic_open(Path(path), "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row, (post_id, p) in enumerate(zip(preds.ids, cells)):
            line = [post_id, decided[row], *p]
            line += [preds.gold[row] if preds.gold[row] is not None else ""] if preds.gold is not None else []
            line += [preds.folds[row]] if preds.folds is not None else []
            writer.writerow(line)


def _probability_cells(probs: np.ndarray) -> list[list[str]]:
    """The p_ cells of a prediction file: each row renormalized to sum to 1, six decimals."""
    probs = np.asarray(probs, dtype=np.float64)
    probs = probs / probs.sum(axis=1, keepdims=True)
    return [[f"{value:.6f}" for value in row] for row in probs]


def as_written(preds: Predictions) -> Predictions:
    """`preds` exactly as `read_predictions` gives them back once written: a model's predictions computed anew
    match, bit for bit, those it wrote to a file that a cv or an ensemble then read."""
    probs = np.array([[float(cell) for cell in row] for row in _probability_cells(preds.probs)], dtype=np.float64)
    return replace(preds, probs=_normalized(probs))


def _normalized(probs: np.ndarray) -> np.ndarray:
    return probs / probs.sum(axis=1, keepdims=True)


def read_predictions(path: str | Path, need_gold: bool = False, decisions_only: bool = False,
                     known: Sequence[str] | None = None) -> Predictions:
    """A prediction file, every row checked. `need_gold`: an OOF file (fitting needs its gold column).

    `decisions_only` (a submission): the `label` column is read instead of the probabilities, and each
    label must be one of `known` (by default the file's p_ column labels; anything when it has none).
    """
    path = Path(path)
    fields, table = read_table(path, "prediction file", id_column="id")
    labels = [name[2:] for name in fields if name.startswith("p_")]
    _check_columns(path, fields, labels, need_gold, decisions_only)
    allowed = list(known) if known else labels
    ids, rows, decided, gold, folds, seen = [], [], [], [], [], set()
    for where, row in table:
        if row["id"] in seen:
            raise InputError(f"{where}: id '{row['id']}' appears twice")
        seen.add(row["id"])
        ids.append(row["id"])
        if decisions_only:
            decided.append(_decision(row["label"], allowed, where))
            continue
        rows.append(_probabilities(row, labels, where))
        gold.append(row.get("gold"))
        if "fold" in fields:
            folds.append(_fold(row["fold"], where))
    if not ids:
        raise InputError(f"{path}: no predictions")
    if decisions_only:
        return Predictions(ids, None, labels, decided=decided, path=path)
    probs = np.array(rows, dtype=np.float64)
    return Predictions(ids, _normalized(probs), labels, gold=gold if "gold" in fields else None,
                       folds=folds if "fold" in fields else None, path=path)


def _check_columns(path: Path, fields: list[str], labels: list[str], need_gold: bool, decisions_only: bool) -> None:
    if decisions_only:
        if not {"id", "label"} <= set(fields):
            raise InputError(f"{path}: expected columns id,label (a prediction file)")
        return
    if "id" not in fields or len(labels) < 2:
        raise InputError(f"{path}: expected columns id,label,p_<label>... (at least two p_ columns)")
    if need_gold and "gold" not in fields:
        raise InputError(f"{path}: no gold column: fitting needs out-of-fold predictions (oof.csv)")


def _probabilities(row: dict[str, str], labels: list[str], where: str) -> list[float]:
    values = []
    for label in labels:
        try:
            value = float(row[f"p_{label}"])
        except (TypeError, ValueError):
            raise InputError(f"{where}: p_{label} must be a number, got {row[f'p_{label}']!r}") from None
        if not math.isfinite(value) or value < 0:
            raise InputError(f"{where}: p_{label} must be a finite probability >= 0, got {value}")
        values.append(value)
    if sum(values) <= 0:
        raise InputError(f"{where}: the probabilities sum to 0")
    return values


def _decision(label: str, allowed: list[str], where: str) -> str:
    if allowed and label not in allowed:
        raise InputError(f"{where}: label '{label}' is not a known label ({', '.join(allowed)})")
    return label


def _fold(value: str, where: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise InputError(f"{where}: fold must be an integer, got {value!r}") from None


def training_columns(path: str | Path) -> list[str]:
    """The columns that mark training predictions (an OOF file: gold, fold) in a prediction file's header."""
    return [name for name in CsvRows(Path(path), "prediction file").header() if name in ("gold", "fold")]


def read_gold_labels(path: str | Path) -> dict[str, str]:
    """id -> gold label of a CSV with columns id,label (the demo's held-out test labels)."""
    path = Path(path)
    fields, table = read_table(path, "gold label file", id_column="id")
    if not {"id", "label"} <= set(fields):
        raise InputError(f"{path}: expected columns id,label (gold labels)")
    gold: dict[str, str] = {}
    for where, row in table:
        if row["id"] in gold:
            raise InputError(f"{where}: id '{row['id']}' appears twice")
        gold[row["id"]] = row["label"]
    return gold
