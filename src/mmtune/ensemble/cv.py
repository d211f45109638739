"""The cv folder a `mmtune cv` run fills, and what is computed from its done folds: oof.csv, test.csv and a summary.

CV folder:
  folds.csv             id,fold of every training post, computed once (or cv.folds_file)
  fold-K/               an ordinary run with train.val_fold=K (config.yaml, best/, last/, val_predictions.csv, ...)
  oof.csv               id,label,p_...,gold,fold: each training post predicted by the fold model that did not see it
  test.csv              the mean of the fold models' test_predictions.csv (when data.test is set)
  cv_summary.json       macro-F1 per fold, its mean and spread, per class, and the OOF scores
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmtune.ensemble.inputs import align
from mmtune.errors import InputError
from mmtune.evaluation.folders import OOF_FILE, SUMMARY_FILE, TEST_FILE, fold_dir
from mmtune.evaluation.metrics import evaluate_probs
from mmtune.evaluation.predictions import Predictions, read_predictions, write_predictions

log = logging.getLogger(__name__)


def fold_is_done(run_dir: Path, needs_test: bool) -> bool:
    """A fold is done once its run wrote its predictions (after a finished or early-stopped loop)."""
    if not (run_dir / "val_predictions.csv").exists():
        return False
    return not needs_test or (run_dir / "test_predictions.csv").exists()


@dataclass
class Collected:
    """What `collect` computed from the done folds: the OOF and (when every done fold predicted data.test) test
    files, and the summary."""

    oof: Path
    test: Path | None
    summary: dict[str, Any]


def collect(cv_dir: Path, folds: dict[str, int], needs_test: bool, write: bool = True) -> Collected:
    """oof.csv, test.csv and cv_summary.json from every done fold, also those of earlier cv.only runs
    (one fold per session is how a 12-hour Kaggle limit meets a 5-fold cv). `write`: only one process writes."""
    done = [k for k in sorted(set(folds.values())) if fold_is_done(fold_dir(cv_dir, k), needs_test)]
    per_fold = {k: read_predictions(fold_dir(cv_dir, k) / "val_predictions.csv", need_gold=True) for k in done}
    oof = out_of_fold(per_fold, folds)
    if len(oof.ids) < len(folds):
        log.warning(f"oof.csv covers {len(oof.ids)} of {len(folds)} training posts (folds {done}); "
                    "run the other folds to complete it")
    collected = Collected(oof=cv_dir / OOF_FILE, test=None, summary=summarize(per_fold, oof, total=len(folds)))
    if write:
        write_predictions(collected.oof, oof)
    tests = [fold_dir(cv_dir, k) / "test_predictions.csv" for k in done]
    if all(path.exists() for path in tests):
        mean = mean_of_tests([read_predictions(path) for path in tests], oof.labels)
        collected.test = cv_dir / TEST_FILE
        if write:
            write_predictions(collected.test, mean)
    if write:
        (cv_dir / SUMMARY_FILE).write_text(json.dumps(collected.summary, indent=1), encoding="utf-8")
    return collected


def out_of_fold(per_fold: dict[int, Predictions], folds: dict[str, int]) -> Predictions:
    """Concatenate the folds' validation predictions, checking each came from the model that did not see it."""
    labels = next(iter(per_fold.values())).labels
    ids: list[str] = []
    parts, gold, fold_of = [], [], []
    for fold, pred in per_fold.items():
        if pred.labels != labels:
            raise InputError(f"{pred.path}: labels {pred.labels} differ from the other folds' {labels}")
        expected = {pid for pid, k in folds.items() if k == fold}
        if set(pred.ids) != expected or len(pred.ids) != len(expected):
            raise InputError(f"{pred.path}: its ids are not exactly the posts of fold {fold} in the folds file "
                             f"({len(pred.ids)} rows, {len(expected)} posts in fold {fold})")
        ids += pred.ids
        parts.append(pred.probs)
        gold += list(pred.gold or [])
        fold_of += [fold] * len(pred.ids)
    return Predictions(ids, np.concatenate(parts), labels, gold=gold, folds=fold_of, path=Path(OOF_FILE))


def mean_of_tests(tests: list[Predictions], labels: list[str]) -> Predictions:
    """The fold models' mean on the test file; every fold must have predicted the same posts (else exit 2)."""
    members = align(tests, labels=labels)
    return Predictions(members.ids, members.probs.mean(axis=0), labels, path=Path(TEST_FILE))


def summarize(per_fold: dict[int, Predictions], oof: Predictions, total: int) -> dict[str, Any]:
    scores = {k: evaluate_probs(p.probs, p.targets(), p.labels) for k, p in per_fold.items()}
    macro = np.array([s["macro_f1"] for s in scores.values()])
    per_class = {
        label: {"mean": float(np.mean(f1)), "std": float(np.std(f1)), "folds": [float(v) for v in f1]}
        for label in oof.labels
        for f1 in [[s["per_class"][label]["f1"] for s in scores.values()]]
    }
    overall = evaluate_probs(oof.probs, oof.targets(), oof.labels)
    return {
        "folds": list(per_fold), "n_oof": len(oof.ids), "n_train": total, "labels": oof.labels,
        "macro_f1": {"mean": float(macro.mean()), "std": float(macro.std()),
                     "folds": {str(k): float(s["macro_f1"]) for k, s in scores.items()}},
        "accuracy": {str(k): float(s["accuracy"]) for k, s in scores.items()},
        "per_class_f1": per_class,
        "oof": {key: overall[key] for key in ("macro_f1", "accuracy", "log_loss", "per_class", "confusion")},
    }

