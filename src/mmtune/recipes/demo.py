"""`mmtune demo`: synthetic demo data -> inspect -> train the demo config offline -> held-out scores, then the
competition workflow on it: 5-fold CV, the calibrated fold ensemble, a report and results.zip, scored on the
held-out demo test split against the best single fold (chosen by its validation score).

Each step is one function: the CLI shows its progress and its results between them.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

import numpy as np

from mmtune.config import Config, load_config
from mmtune.demo import DemoData, make_demo_data
from mmtune.errors import InputError
from mmtune.evaluation.folders import fold_dir
from mmtune.evaluation.metrics import evaluate_probs
from mmtune.evaluation.predictions import Predictions, read_gold_labels, read_predictions
from mmtune.recipes.audit import AuditFiles, inspect
from mmtune.recipes.cv import run_cv
from mmtune.recipes.ensemble import EnsembleRequest, run_ensemble
from mmtune.recipes.report import report
from mmtune.recipes.submit import submit_file

DEMO_FOLDS = 5
# The demo head's validation curves flatten by epoch 10 (demo-runs/cv/report.html): folds stop at 12
# so that 5 folds add about a minute to the demo on 2 cores.
DEMO_CV_EPOCHS, DEMO_CV_PATIENCE = 12, 4


def check_paths(out: Path, run_dir: Path) -> None:
    """The demo starts its run over (it deletes --run-dir): that folder must be a run folder or absent,
    and must hold neither the demo data nor the current folder."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: is a file; the demo data needs a folder")
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"--run-dir {run_dir}: is a file, not a folder")
    resolved = run_dir.resolve()
    for name, inside in (("--out", out), ("the current folder", Path.cwd())):
        if resolved == inside.resolve() or resolved in inside.resolve().parents:
            raise InputError(f"--run-dir {run_dir}: holds {name}; the demo deletes --run-dir before training")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not (run_dir / "config.yaml").is_file():
        raise InputError(f"--run-dir {run_dir}: is a folder but not a mmtune run (no config.yaml); the demo "
                         "deletes --run-dir before training, give a new folder")


def make_data(out: Path, n_train: int, n_test: int, seed: int) -> DemoData:
    return make_demo_data(out, n_train=n_train, n_test=n_test, seed=seed)


def demo_config(run_dir: Path, demo: DemoData, overrides: Sequence[str] = ()) -> Config:
    """The shipped demo config (resources/demo.yaml) on the demo data, training into run_dir."""
    overrides = [
        f"output_dir={run_dir}", f"data.train={demo.train}", f"data.train_images={demo.train_images}",
        f"data.test={demo.test}", f"data.test_images={demo.test_images}", *overrides,
    ]
    with as_file(files("mmtune") / "resources" / "demo.yaml") as path:
        return load_config(path, overrides)


def audit(cfg: Config, demo: DemoData, progress: Callable[[], None] | None = None) -> dict[str, Any]:
    """The audit of the demo's train and test files, written to inspect.json next to them."""
    files = AuditFiles(demo.train, demo.train_images, demo.test, demo.test_images)
    return inspect(files, cfg.data, json_out=demo.root / "inspect.json", progress=progress)


@dataclass
class DemoRun:
    stopped: str
    labels: list[str]
    validation: dict[str, Any]  # best/metrics.json: the validation fold's scores
    held_out: dict[str, Any]  # the scores of test_predictions.csv against the demo's answer key


def train_run(cfg: Config, demo: DemoData) -> DemoRun:
    """Train the demo config from scratch (the feature cache stays) and score it on the held-out test split."""
    from mmtune.recipes.train import train  # torch and transformers: only for the steps that train

    run_dir = Path(cfg.output_dir)
    shutil.rmtree(run_dir, ignore_errors=True)  # the demo always starts over
    run = train(cfg)
    best = json.loads((run_dir / "best" / "metrics.json").read_text(encoding="utf-8"))
    pred = read_predictions(run_dir / "test_predictions.csv")
    return DemoRun(run.stopped, pred.labels, best, held_out_score(pred, read_gold_labels(demo.test_gold)))


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
    figures["report"] = report(cv_dir)
    figures["submission"] = cv_dir / "results.zip"
    submit_file(ensemble.out, figures["submission"], phase="dev", ids=Path(cfg.data.test), data=cfg.data)
    return figures
