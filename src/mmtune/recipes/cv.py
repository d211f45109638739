"""`mmtune cv`: k ordinary runs that share one folds.csv, then oof.csv, test.csv and a summary (the cv folder:
mmtune.ensemble.cv).

`cv.refit`: then one more run, refit/, on every training post (train.full_fit) for the median of the folds'
best epochs. refit/test_predictions.csv is that model alone; test_with_refit.csv is the mean of the k fold
models and the refit model (k + 1 equal members); test.csv stays the fold models' mean.
"""

from __future__ import annotations

import contextlib
import json
import logging
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mmtune.config import Config
from mmtune.data.checks import load_posts
from mmtune.data.folds import make_folds, read_folds, write_folds
from mmtune.durations import budget_seconds
from mmtune.ensemble.cv import collect, fold_is_done, mean_of_tests
from mmtune.errors import InputError
from mmtune.evaluation.folders import FOLDS_FILE, fold_dir
from mmtune.evaluation.predictions import read_predictions, write_predictions
from mmtune.training.budget import TimeBudget, budget_clock
from mmtune.training.run_folder import locked, make_run_dir

log = logging.getLogger(__name__)

REFIT_DIR, REFIT_TEST_FILE = "refit", "test_with_refit.csv"


@dataclass
class CVResult:
    """What `run_cv` did: the folds it trained, skipped or left unfinished, and the files it wrote."""

    cv_dir: Path
    folds: list[int]
    trained: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    stopped: dict[int | str, str] = field(default_factory=dict)  # fold (or "refit") -> time_budget | signal
    configs: dict[int, Config] = field(default_factory=dict)  # fold -> the config its run resolved (trained folds)
    oof: Path | None = None
    test: Path | None = None
    summary: dict[str, Any] | None = None
    refit_epochs: int | None = None  # cv.refit: the epochs the refit run trained
    refit_test: Path | None = None  # cv.refit with data.test: test_with_refit.csv

    @property
    def complete(self) -> bool:
        return not self.stopped


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


def run_cv(cfg: Config, budget_from_call: bool = False) -> CVResult:
    """Train every selected fold (skipping done ones, resuming interrupted ones), then collect.
    `budget_from_call`: train.time_budget counts from this call (a notebook) instead of the process start."""
    if cfg.data.val:
        raise InputError("data.val: cv validates on folds of data.train; unset data.val (data.val=null)")
    from mmtune.models.kinds import check_kind  # torch: not for `import mmtune.api`

    check_kind(cfg)  # the kind and its config section, before the cv folder is made
    cv_dir = Path(cfg.output_dir)
    with budget_clock() if budget_from_call else contextlib.nullcontext():
        processes = process_state()  # under torchrun / accelerate launch every rank runs this, in step
        if processes.is_main_process:
            make_run_dir(cv_dir)
        processes.wait_for_everyone()
        with locked(cv_dir, processes):
            return _run_folds(cfg, cv_dir, processes)


def _run_folds(cfg: Config, cv_dir: Path, processes: Any) -> CVResult:
    """`run_cv` once cv_dir exists and this command holds it."""
    # Imported here: `import mmtune.api` and the CLI's parser do not load torch.
    from accelerate.utils import broadcast_object_list

    from mmtune.recipes.train import train
    from mmtune.training import checkpoint as ckpt
    from mmtune.training.resume import check_resume

    with processes.main_process_first():  # the main process writes folds.csv, the others then read it
        folds_path, folds = shared_folds(cfg, cv_dir)
    result = CVResult(cv_dir=cv_dir, folds=selected_folds(cfg, folds))
    # train.time_budget is for the whole cv: every fold's run counts it from the start of this process, so each
    # fold gets what the folds before it left.
    budget = TimeBudget(budget_seconds(cfg.train.time_budget))
    for fold in result.folds:
        run_dir = fold_dir(cv_dir, fold)
        fold_cfg = fold_config(cfg, cv_dir, fold, folds_path)
        if fold_is_done(run_dir, needs_test=bool(cfg.data.test)):
            check_resume(run_dir, fold_cfg, resume=True)  # a done fold of another config must not join this cv
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
        run = train(fold_cfg, resume=resume, name=f"{cv_dir.resolve().name}/{run_dir.name}")
        if run.stopped not in ("finished", "early_stopping"):
            result.stopped[fold] = run.stopped
            return result  # the budget or a signal stops the whole cv; rerunning continues here
        result.trained.append(fold)
        result.configs[fold] = run.config
    collected = collect(cv_dir, folds, needs_test=bool(cfg.data.test), write=processes.is_main_process)
    result.oof, result.test, result.summary = collected.oof, collected.test, collected.summary
    processes.wait_for_everyone()
    if cfg.cv.refit:
        _refit(cfg, cv_dir, result, processes)
    return result


def best_epoch(run_dir: Path, metric: str) -> int:
    """The epoch of a fold run's best evaluation (metrics.jsonl: the record where `best` was first reached)."""
    path = run_dir / "metrics.jsonl"
    try:
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        best = records[-1]["best"]  # the run's final best value, whichever direction the metric improves in
        return max(1, next(int(r["epoch"]) + (r["kind"] != "epoch") for r in records if r[metric] == best))
    except (OSError, ValueError, KeyError, TypeError, StopIteration):
        raise InputError(f"{path}: missing or damaged; cv.refit reads each fold's best epoch there") from None


def _refit(cfg: Config, cv_dir: Path, result: CVResult, processes: Any) -> None:
    """Train refit/ on every training post for the folds' median best epoch; write test_with_refit.csv."""
    from mmtune.recipes.train import train
    from mmtune.training import checkpoint as ckpt

    folds = sorted(result.trained + result.skipped)
    epochs = max(1, round(statistics.median(best_epoch(fold_dir(cv_dir, k), cfg.train.metric) for k in folds)))
    run_dir = cv_dir / REFIT_DIR
    refit_cfg = replace(cfg, output_dir=str(run_dir), cv=replace(cfg.cv, refit=False),
                        train=replace(cfg.train, full_fit=True, epochs=epochs))
    result.refit_epochs = epochs
    done = (run_dir / "test_predictions.csv").exists() if cfg.data.test else ckpt.resolve(run_dir / "best")
    if not done:
        log.info(f"refit: every training post, {epochs} epochs (median best epoch of folds {folds}) in {run_dir}")
        run = train(refit_cfg, resume=ckpt.resolve(run_dir / "last") is not None,
                    name=f"{cv_dir.resolve().name}/{REFIT_DIR}")
        if run.stopped not in ("finished", "early_stopping"):
            result.stopped[REFIT_DIR] = run.stopped  # rerunning the cv continues the refit run
            return
    if cfg.data.test and result.test is not None and processes.is_main_process:
        members = [read_predictions(fold_dir(cv_dir, k) / "test_predictions.csv") for k in folds]
        members.append(read_predictions(run_dir / "test_predictions.csv"))
        mean = mean_of_tests(members, members[0].labels)
        result.refit_test = cv_dir / REFIT_TEST_FILE
        write_predictions(result.refit_test, mean)
    processes.wait_for_everyone()


def process_state() -> Any:
    """Accelerate's view of the processes (one, or the ranks of a launcher), made as the training runs make it."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())
