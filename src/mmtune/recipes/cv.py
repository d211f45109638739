"""`mmtune cv`: k ordinary runs that share one folds.csv, then oof.csv, test.csv and a summary (the cv folder:
mmtune.ensemble.cv)."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mmtune.config import Config
from mmtune.data.checks import load_posts
from mmtune.data.folds import make_folds, read_folds, write_folds
from mmtune.durations import budget_seconds
from mmtune.ensemble.cv import collect, fold_is_done
from mmtune.errors import InputError
from mmtune.evaluation.folders import FOLDS_FILE, fold_dir
from mmtune.training.budget import TimeBudget, budget_clock
from mmtune.training.run_folder import locked, make_run_dir

log = logging.getLogger(__name__)


@dataclass
class CVResult:
    """What `run_cv` did: the folds it trained, skipped or left unfinished, and the files it wrote."""

    cv_dir: Path
    folds: list[int]
    trained: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    stopped: dict[int, str] = field(default_factory=dict)  # fold -> time_budget | signal
    configs: dict[int, Config] = field(default_factory=dict)  # fold -> the config its run resolved (trained folds)
    oof: Path | None = None
    test: Path | None = None
    summary: dict[str, Any] | None = None

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
        run = train(fold_cfg, resume=resume)
        if run.stopped not in ("finished", "early_stopping"):
            result.stopped[fold] = run.stopped
            return result  # the budget or a signal stops the whole cv; rerunning continues here
        result.trained.append(fold)
        result.configs[fold] = run.config
    collected = collect(cv_dir, folds, needs_test=bool(cfg.data.test), write=processes.is_main_process)
    result.oof, result.test, result.summary = collected.oof, collected.test, collected.summary
    processes.wait_for_everyone()
    return result


def process_state() -> Any:
    """Accelerate's view of the processes (one, or the ranks of a launcher), made as the training runs make it."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())
