"""The demo's competition workflow: 5-fold CV, the calibrated fold ensemble, a report and results.zip,
scored on the held-out demo test split against the best single fold (chosen by its validation score)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from mmtune.config import Config
from mmtune.ensemble.cv import run_cv
from mmtune.ensemble.run import EnsembleRequest, run_ensemble
from mmtune.errors import InputError
from mmtune.evaluation.folders import fold_dir
from mmtune.evaluation.metrics import evaluate_probs
from mmtune.evaluation.predictions import Predictions, read_gold_labels, read_predictions
from mmtune.evaluation.report import write_report
from mmtune.evaluation.submission import SubmitRequest, submit
from mmtune.terminal import literal

DEMO_FOLDS = 5
# The demo head's validation curves flatten by epoch 10 (demo-runs/cv/report.html): folds stop at 12
# so that 5 folds add about a minute to the demo on 2 cores.
DEMO_CV_EPOCHS, DEMO_CV_PATIENCE = 12, 4


def held_out_score(pred: Predictions, gold: dict[str, str]) -> dict[str, Any]:
    missing = [pid for pid in pred.ids if pid not in gold]
    if missing:
        raise InputError(f"{pred.path}: id '{missing[0]}' has no gold label")
    targets = np.array([pred.labels.index(gold[pid]) for pid in pred.ids])
    return evaluate_probs(pred.probs, targets, pred.labels)


def cv_workflow(cfg: Config, test_gold: Path, cv_dir: Path, folds: int = DEMO_FOLDS,
                epochs: int = DEMO_CV_EPOCHS) -> dict[str, Any]:
    """CV + calibrated mean of the fold models on data.test + report; returns the held-out figures."""
    shutil.rmtree(cv_dir, ignore_errors=True)  # the demo starts over; the feature cache stays
    cfg = replace(cfg, output_dir=str(cv_dir), cv=replace(cfg.cv, folds=folds, only=None, folds_file=None),
                  train=replace(cfg.train, epochs=min(epochs, cfg.train.epochs),
                                early_stopping_patience=min(DEMO_CV_PATIENCE, cfg.train.early_stopping_patience
                                                            or DEMO_CV_PATIENCE)))
    result = run_cv(cfg)
    if not result.complete or result.summary is None:
        raise InputError(f"{cv_dir}: the demo cv stopped early ({result.stopped})")
    ensemble = run_ensemble(EnsembleRequest(inputs=[cv_dir], out=cv_dir / "ensemble.csv", method="mean",
                                            calibrate="auto"))
    gold = read_gold_labels(test_gold)
    per_fold = {k: held_out_score(read_predictions(fold_dir(cv_dir, k) / "test_predictions.csv"), gold)
                for k in result.folds}
    best_fold = max(result.folds, key=lambda k: result.summary["macro_f1"]["folds"][str(k)])
    figures = {
        "best_fold": best_fold,
        "best_fold_test": per_fold[best_fold],
        "mean_test": held_out_score(read_predictions(cv_dir / "test.csv"), gold),
        "calibrated_test": held_out_score(read_predictions(ensemble.out), gold),
        "calibration": ensemble.summary["calibration"],
        "cv_summary": result.summary,
    }
    figures["report"] = write_report(cv_dir)
    figures["submission"] = cv_dir / "results.zip"
    submit(SubmitRequest(ensemble.out, figures["submission"], phase="dev", ids_from=Path(cfg.data.test), data=cfg.data))
    return figures


def workflow_table(figures: dict[str, Any]) -> Table:
    calibration = figures["calibration"]
    applied = "applied" if calibration["biases_applied"] else "not applied, temperature only"
    table = Table(title=f"demo cv on the held-out test split (macro-F1 biases: nested-CV gain on OOF "
                        f"{calibration['nested_cv']['gain']:+.3f}, {applied})", title_justify="left")
    table.add_column("")
    table.add_column("macro-F1", justify="right")
    table.add_column("accuracy", justify="right")
    rows = [(f"best single fold (fold {figures['best_fold']}, by validation)", figures["best_fold_test"]),
            ("mean of the 5 fold models", figures["mean_test"]),
            ("calibrated 5-fold ensemble", figures["calibrated_test"])]
    for name, scores in rows:
        table.add_row(name, f"{scores['macro_f1']:.3f}", f"{scores['accuracy']:.3f}")
    return table


def run_demo_workflow(cfg: Config, test_gold: Path, cv_dir: Path, console: Console) -> None:
    from mmtune.cli_workflow import cv_table

    with console.status(literal(f"demo: {DEMO_FOLDS}-fold cv in {cv_dir}")):  # why: a str status is markup
        figures = cv_workflow(cfg, test_gold, cv_dir)
    console.print(cv_table(figures["cv_summary"]))
    console.print(workflow_table(figures))
    console.print(f"cv: {cv_dir} (oof.csv, test.csv, ensemble.csv); report: {figures['report']}; "
                  f"submission: {figures['submission']}")
