"""Prediction files as ensemble inputs: read with row-level checks, aligned by id and label order.

Any mismatch between the inputs (ids, label sets, gold labels) is bad input naming the file: an
ensemble of rows that do not belong together would look fine and score nonsense.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mmtune.data.csvfile import read_table
from mmtune.errors import InputError


@dataclass
class Predictions:
    """One prediction file: [N, K] probabilities in `labels` order; OOF files also carry gold and fold."""

    path: Path
    ids: list[str]
    probs: np.ndarray
    labels: list[str]
    gold: list[str] | None = None
    folds: list[int] | None = None

    def targets(self) -> np.ndarray:
        """The gold labels as indices into `labels`."""
        return gold_indices(self.gold, self.labels, self.path)


def gold_indices(gold: list[str] | None, labels: list[str], path: Path) -> np.ndarray:
    index = {label: k for k, label in enumerate(labels)}
    if gold is None:
        raise InputError(f"{path}: no gold labels")
    unknown = [g for g in gold if g not in index]
    if unknown:
        raise InputError(f"{path}: gold label '{unknown[0]}' is not one of {labels}")
    return np.array([index[g] for g in gold], dtype=int)


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


def read_prediction_file(path: str | Path, need_gold: bool = False) -> Predictions:
    path = Path(path)
    fields, table = read_table(path, "prediction file", id_column="id")
    labels = [name[2:] for name in fields if name.startswith("p_")]
    if "id" not in fields or len(labels) < 2:
        raise InputError(f"{path}: expected columns id,label,p_<label>... (at least two p_ columns)")
    if need_gold and "gold" not in fields:
        raise InputError(f"{path}: no gold column: fitting needs out-of-fold predictions (oof.csv)")
    ids, rows, gold, folds, seen = [], [], [], [], set()
    for where, row in table:
        if row["id"] in seen:
            raise InputError(f"{where}: id '{row['id']}' appears twice")
        seen.add(row["id"])
        ids.append(row["id"])
        rows.append(_probabilities(row, labels, where))
        if "gold" in fields:
            gold.append(row["gold"])
        if "fold" in fields:
            folds.append(_fold(row["fold"], where))
    if not ids:
        raise InputError(f"{path}: no predictions")
    probs = np.array(rows, dtype=np.float64)
    return Predictions(path, ids, probs / probs.sum(axis=1, keepdims=True), labels,
                       gold=gold if "gold" in fields else None, folds=folds if "fold" in fields else None)


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


def _fold(value: str, where: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise InputError(f"{where}: fold must be an integer, got {value!r}") from None


# ----------------------------------------------------------------------------------------------
# Label mappings: a 2- or 3-class model's probabilities spread onto the target label set


LabelMap = Mapping[str, Sequence[str]]


def map_labels(pred: Predictions, target: list[str], mapping: LabelMap, priors: np.ndarray | None) -> Predictions:
    """Probabilities over `target`: each source label's mass goes to its mapped target labels.

    Within a group (e.g. `sarcasm -> [multi, image, text]`) the mass is split by the target labels'
    priors (the OOF gold frequencies), equally without them: a model that cannot tell the group's
    labels apart says nothing about which one it is.
    """
    if pred.labels == target:
        return pred
    matrix = np.zeros((len(pred.labels), len(target)))
    for row, label in enumerate(pred.labels):
        mapped = list(mapping.get(label, [label] if label in target else []))
        unknown = [name for name in mapped if name not in target]
        if not mapped or unknown:
            raise InputError(f"{pred.path}: label '{label}' is not in the ensemble's labels {target}; "
                             "give it a label mapping (--label-map)")
        columns = [target.index(name) for name in mapped]
        share = priors[columns] if priors is not None and priors[columns].sum() > 0 else np.ones(len(columns))
        matrix[row, columns] = share / share.sum()
    covered = matrix.sum(axis=0) > 0
    if not covered.all():
        missing = [target[k] for k in np.flatnonzero(~covered)]
        raise InputError(f"{pred.path}: no label maps to {missing}; the ensemble needs every label covered "
                         "(give a label mapping with --label-map)")
    return replace(pred, probs=pred.probs @ matrix, labels=list(target))


def target_labels(preds: Sequence[Predictions], mapping: LabelMap) -> list[str]:
    """The ensemble's label order: that of the first input with the largest label set."""
    widest = max(preds, key=lambda p: len(p.labels))
    mapped = {name for names in mapping.values() for name in names}
    unknown = sorted(mapped - set(widest.labels))
    if unknown:
        raise InputError(f"label map: target label(s) {unknown} are not among {widest.labels} ({widest.path})")
    return list(widest.labels)


def gold_priors(gold: Sequence[str], labels: list[str]) -> np.ndarray:
    counts = np.array([sum(1 for g in gold if g == label) for label in labels], dtype=np.float64)
    return counts / max(1.0, counts.sum())


# ----------------------------------------------------------------------------------------------
# Alignment


@dataclass
class Members:
    """M aligned inputs: probs [M, N, K] over `labels`, rows in `ids` order."""

    paths: list[Path]
    ids: list[str]
    labels: list[str]
    probs: np.ndarray
    gold: list[str] | None = None
    folds: list[int] | None = None

    def targets(self) -> np.ndarray:
        return gold_indices(self.gold, self.labels, self.paths[0])


def align(preds: Sequence[Predictions], mapping: LabelMap | None = None, labels: list[str] | None = None,
          priors: np.ndarray | None = None) -> Members:
    """Reorder every input to the first one's ids and to one label order; mismatches exit 2 naming the file."""
    if not preds:
        raise InputError("ensemble: no input files")
    mapping = mapping or {}
    labels = labels or target_labels(preds, mapping)
    # Ids, row order and gold come from an input over the full label set: a 2-class model's gold
    # column is in its own labels.
    first = next((p for p in preds if set(p.labels) == set(labels)), preds[0])
    order = {pid: row for row, pid in enumerate(first.ids)}
    if first.gold is not None and priors is None:
        priors = gold_priors(first.gold, labels)
    stacked = []
    for pred in preds:
        _check_same_ids(pred, first, order)
        rows = np.array([order[pid] for pid in pred.ids])
        inverse = np.argsort(rows)  # pred rows in the first file's order
        if set(pred.labels) == set(first.labels):
            _check_same_gold(pred, first, inverse)
        mapped = map_labels(pred, labels, mapping, priors) if set(pred.labels) != set(labels) else pred
        columns = [mapped.labels.index(label) for label in labels]
        stacked.append(mapped.probs[inverse][:, columns])
    return Members(paths=[p.path for p in preds], ids=list(first.ids), labels=labels, probs=np.stack(stacked),
                   gold=first.gold, folds=first.folds)


def _check_same_ids(pred: Predictions, first: Predictions, order: dict[str, int]) -> None:
    missing = [pid for pid in pred.ids if pid not in order]
    if missing:
        raise InputError(f"{pred.path}: id '{missing[0]}' is not in {first.path} "
                         f"({len(missing)} ids differ); ensemble inputs must predict the same posts")
    if len(pred.ids) != len(first.ids):
        absent = next(pid for pid in first.ids if pid not in set(pred.ids))
        raise InputError(f"{pred.path}: id '{absent}' of {first.path} is missing "
                         f"({len(pred.ids)} rows vs {len(first.ids)})")


def _check_same_gold(pred: Predictions, first: Predictions, inverse: np.ndarray) -> None:
    if first.gold is None or pred.gold is None:
        return
    theirs = [pred.gold[i] for i in inverse]
    for pid, a, b in zip(first.ids, first.gold, theirs):
        if a != b:
            raise InputError(f"{pred.path}: gold label of id '{pid}' is '{b}' but '{a}' in {first.path}")
