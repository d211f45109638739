"""Prediction files as ensemble inputs (read by mmtune.evaluation.predictions), aligned by id and label order.

Any mismatch between the inputs (ids, label sets, gold labels) is bad input naming the file: an
ensemble of rows that do not belong together would look fine and score nonsense.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mmtune.errors import InputError
from mmtune.evaluation.predictions import Predictions, gold_indices

# ----------------------------------------------------------------------------------------------
# Label mappings: a 2- or 3-class model's probabilities spread onto the target label set


LabelMap = Mapping[str, Sequence[str]]


def map_labels(pred: Predictions, target: list[str], mapping: LabelMap, priors: np.ndarray | None,
               within: np.ndarray | None = None) -> Predictions:
    """Probabilities over `target`: each source label's mass goes to its mapped target labels.

    A model that cannot tell a group's labels apart (`sarcasm -> [multi, image, text]`) says nothing about which
    one it is, so within a group its mass is split as `within` splits it: the [N, K] mean of the inputs over the
    full label set, row by row. Weighted by any blend, such a model then moves mass between groups only, never
    the decision inside one (given all the weight, it would otherwise hand every sarcastic post to the most
    frequent sarcasm label). Without `within`, or where it gives a group no mass, by the target labels' priors
    (the OOF gold frequencies), equally without them.
    """
    if pred.labels == target:
        return pred
    matrix = _mapping_matrix(pred, target, mapping, priors)
    probs = pred.probs @ matrix
    if within is not None:
        for row in range(len(pred.labels)):
            columns = np.flatnonzero(matrix[row])
            mass = within[:, columns].sum(axis=1, keepdims=True)
            share = np.where(mass > 0, within[:, columns] / np.where(mass > 0, mass, 1.0), matrix[row, columns])
            probs[:, columns] += pred.probs[:, [row]] * (share - matrix[row, columns])
    return replace(pred, probs=probs, labels=list(target))


def _mapping_matrix(pred: Predictions, target: list[str], mapping: LabelMap, priors: np.ndarray | None) -> np.ndarray:
    """[source labels, target labels]: each source label's mass split over its targets by the priors."""
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
    return matrix


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
    reordered = []
    for pred in preds:
        _check_same_ids(pred, first, order)
        inverse = np.argsort(np.array([order[pid] for pid in pred.ids]))  # pred rows in the first file's order
        if set(pred.labels) == set(first.labels):
            _check_same_gold(pred, first, inverse)
        reordered.append(replace(pred, ids=list(first.ids), probs=pred.probs[inverse], gold=None, folds=None))
    full = [np.stack([p.probs[:, p.labels.index(label)] for label in labels], axis=1)
            for p in reordered if set(p.labels) == set(labels)]
    within = np.mean(full, axis=0) if full else None
    stacked = []
    for pred in reordered:
        mapped = map_labels(pred, labels, mapping, priors, within) if set(pred.labels) != set(labels) else pred
        stacked.append(mapped.probs[:, [mapped.labels.index(label) for label in labels]])
    return Members(paths=[p.path for p in preds], ids=list(first.ids), labels=labels, probs=np.stack(stacked),
                   gold=first.gold, folds=first.folds)


def check_same_folds(preds: Sequence[Predictions], why: str) -> None:
    """Inputs cross-validated on different fold splits are refused (exit 2, naming them): a post's OOF rows then
    come from models trained on different posts, and no nested CV over one input's folds keeps the others'
    training posts out of its held-out fold."""
    with_folds = [p for p in preds if p.folds is not None]
    first = dict(zip(with_folds[0].ids, with_folds[0].folds)) if with_folds else {}
    for pred in with_folds[1:]:
        pairs = {(first[pid], fold) for pid, fold in zip(pred.ids, pred.folds) if pid in first}
        # The same split may number its folds otherwise: what must match is the partition of the posts.
        if len({a for a, _ in pairs}) != len(pairs) or len({b for _, b in pairs}) != len(pairs):
            raise InputError(f"{why}: {with_folds[0].path} and {pred.path} were cross-validated on different "
                             "folds, so their OOF rows are not comparable; give every cv the same folds file "
                             "(cv.folds_file) or use --method mean")


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
