"""`mmtune cv`: k ordinary runs that share one folds.csv, then oof.csv, test.csv and a summary.

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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mmtune.config import Config
from mmtune.data.checks import load_posts
from mmtune.data.folds import make_folds, read_folds, write_folds
from mmtune.ensemble.inputs import Predictions, align, read_prediction_file
from mmtune.errors import InputError
from mmtune.evaluation.metrics import evaluate_probs
from mmtune.evaluation.predict import write_predictions
from mmtune.training.budget import TimeBudget, parse_duration
from mmtune.training.run_folder import locked, make_run_dir

log = logging.getLogger(__name__)

OOF_FILE, TEST_FILE, SUMMARY_FILE, FOLDS_FILE = "oof.csv", "test.csv", "cv_summary.json", "folds.csv"


@dataclass
class CVResult:
    """What `run_cv` did: the folds it trained, skipped or left unfinished, and the files it wrote."""

    cv_dir: Path
    folds: list[int]
    trained: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    stopped: dict[int, str] = field(default_factory=dict)  # fold -> time_budget | signal
    oof: Path | None = None
    test: Path | None = None
    summary: dict[str, Any] | None = None

    @property
    def complete(self) -> bool:
        return not self.stopped


def fold_dir(cv_dir: Path, fold: int) -> Path:
    return cv_dir / f"fold-{fold}"


def shared_folds(cfg: Config, cv_dir: Path) -> tuple[Path, dict[str, int]]:
    """The one folds.csv every fold reads: cv.folds_file, or folds computed once into cv_dir."""
    if cfg.cv.folds_file:
        path = Path(cfg.cv.folds_file).resolve()
        return path, read_folds(path)
    path = (cv_dir / FOLDS_FILE).resolve()
    if path.exists():  # a resumed cv must see the split it started with
        folds = read_folds(path)
        if len(set(folds.values())) != cfg.cv.folds:
            raise InputError(f"cv.folds: {path} holds {len(set(folds.values()))} folds, not {cfg.cv.folds}; "
                             "use another output_dir for another split")
        return path, folds
    posts = load_posts(cfg.data.train, cfg.data.train_images, cfg.data, labels=cfg.data.labels,
                       require_label=True).require_posts("data.train")
    folds = make_folds(posts, k=cfg.cv.folds, seed=cfg.seed, group_by=cfg.cv.group_by)
    write_folds(folds, path)
    return path, folds


def selected_folds(cfg: Config, folds: dict[str, int]) -> list[int]:
    known = sorted(set(folds.values()))
    if cfg.cv.only is None:
        return known
    unknown = [k for k in cfg.cv.only if k not in known]
    if unknown:
        raise InputError(f"cv.only: fold {unknown[0]} does not exist (folds: {known})")
    return sorted(set(cfg.cv.only))


def fold_config(cfg: Config, cv_dir: Path, fold: int, folds_path: Path) -> Config:
    return replace(cfg, output_dir=str(fold_dir(cv_dir, fold)), train=replace(cfg.train, val_fold=fold),
                   cv=replace(cfg.cv, folds_file=str(folds_path)))


def check_same_config(run_dir: Path, fold_cfg: Config) -> None:
    """Exit 2 naming every key in which a finished fold's config differs from this cv's (as `--resume` does)."""
    from mmtune.config import load_saved_config
    from mmtune.training.run import check_resume

    saved = load_saved_config(run_dir / "config.yaml")
    # What the fold's run filled in itself (label order, an automatic batch size) is not a difference.
    data = replace(fold_cfg.data, labels=fold_cfg.data.labels or saved.data.labels)
    train = fold_cfg.train
    if train.batch_size == 0:
        train = replace(train, batch_size=saved.train.batch_size, grad_accum=saved.train.grad_accum)
    cv = replace(fold_cfg.cv, only=saved.cv.only)  # which folds a session runs is not what a fold learns
    check_resume(run_dir, replace(fold_cfg, data=data, train=train, cv=cv), resume=True)


def fold_is_done(run_dir: Path, needs_test: bool) -> bool:
    """A fold is done once its run wrote its predictions (after a finished or early-stopped loop)."""
    if not (run_dir / "val_predictions.csv").exists():
        return False
    return not needs_test or (run_dir / "test_predictions.csv").exists()


def run_cv(cfg: Config) -> CVResult:
    """Train every selected fold (skipping done ones, resuming interrupted ones), then collect."""
    from mmtune.models.kinds import check_kind

    if cfg.data.val:
        raise InputError("data.val: cv validates on folds of data.train; unset data.val (data.val=null)")
    check_kind(cfg)  # the kind and its config section, before the cv folder is made
    cv_dir = Path(cfg.output_dir)
    processes = process_state()  # under torchrun / accelerate launch every rank runs this, in step
    if processes.is_main_process:
        make_run_dir(cv_dir)
    processes.wait_for_everyone()
    with locked(cv_dir, processes):
        return _run_folds(cfg, cv_dir, processes)


def _run_folds(cfg: Config, cv_dir: Path, processes: Any) -> CVResult:
    """`run_cv` once cv_dir exists and this command holds it."""
    # Imported here: ensemble, report and submit read cv folders without loading torch.
    from accelerate.utils import broadcast_object_list

    from mmtune.training import checkpoint as ckpt
    from mmtune.training.run import train

    with processes.main_process_first():  # the main process writes folds.csv, the others then read it
        folds_path, folds = shared_folds(cfg, cv_dir)
    result = CVResult(cv_dir=cv_dir, folds=selected_folds(cfg, folds))
    # train.time_budget is for the whole cv: every fold's run counts it from the start of this process, so each
    # fold gets what the folds before it left.
    budget = TimeBudget(parse_duration(cfg.train.time_budget) if cfg.train.time_budget else None)
    for fold in result.folds:
        run_dir = fold_dir(cv_dir, fold)
        fold_cfg = fold_config(cfg, cv_dir, fold, folds_path)
        if fold_is_done(run_dir, needs_test=bool(cfg.data.test)):
            check_same_config(run_dir, fold_cfg)  # a done fold of another config must not join this cv
            log.info(f"fold {fold}: done, skipped ({run_dir})")
            result.skipped.append(fold)
            continue
        if budget.seconds is not None:
            # The main process's clock decides for all: ranks that disagreed would wait on each other forever.
            if broadcast_object_list([budget.remaining()])[0] <= 0:
                result.stopped[fold] = "time_budget"
                return result
        resume = ckpt.resolve(run_dir / "last") is not None
        log.info(f"fold {fold}: {'resuming' if resume else 'training'} in {run_dir}")
        stopped = train(fold_cfg, resume=resume)
        if stopped not in ("finished", "early_stopping"):
            result.stopped[fold] = stopped
            return result  # the budget or a signal stops the whole cv; rerunning continues here
        result.trained.append(fold)
    collect(cv_dir, folds, result, needs_test=bool(cfg.data.test), write=processes.is_main_process)
    processes.wait_for_everyone()
    return result


def process_state() -> Any:
    """Accelerate's view of the processes (one, or the ranks of a launcher), made as the training runs make it."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def collect(cv_dir: Path, folds: dict[str, int], result: CVResult, needs_test: bool, write: bool = True) -> None:
    """oof.csv, test.csv and cv_summary.json from every done fold, also those of earlier cv.only runs
    (one fold per session is how a 12-hour Kaggle limit meets a 5-fold cv). `write`: only one process writes."""
    done = [k for k in sorted(set(folds.values())) if fold_is_done(fold_dir(cv_dir, k), needs_test)]
    per_fold = {k: read_prediction_file(fold_dir(cv_dir, k) / "val_predictions.csv", need_gold=True) for k in done}
    oof = out_of_fold(per_fold, folds)
    if len(oof.ids) < len(folds):
        log.warning(f"oof.csv covers {len(oof.ids)} of {len(folds)} training posts (folds {done}); "
                    "run the other folds to complete it")
    result.oof = cv_dir / OOF_FILE
    if write:
        write_predictions(result.oof, oof.ids, oof.probs, oof.labels, gold=oof.gold, folds=oof.folds)
    tests = [fold_dir(cv_dir, k) / "test_predictions.csv" for k in done]
    if all(path.exists() for path in tests):
        mean = mean_of_tests([read_prediction_file(path) for path in tests], oof.labels)
        result.test = cv_dir / TEST_FILE
        if write:
            write_predictions(result.test, mean.ids, mean.probs, mean.labels)
    result.summary = summarize(per_fold, oof, total=len(folds))
    if write:
        (cv_dir / SUMMARY_FILE).write_text(json.dumps(result.summary, indent=1), encoding="utf-8")


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
    return Predictions(path=Path(OOF_FILE), ids=ids, probs=np.concatenate(parts), labels=labels, gold=gold,
                       folds=fold_of)


def mean_of_tests(tests: list[Predictions], labels: list[str]) -> Predictions:
    """The fold models' mean on the test file; every fold must have predicted the same posts (else exit 2)."""
    members = align(tests, labels=labels)
    return Predictions(path=Path(TEST_FILE), ids=members.ids, probs=members.probs.mean(axis=0), labels=labels)


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

