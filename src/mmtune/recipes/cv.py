"""`mmtune cv`: k ordinary runs that share one folds.csv, then oof.csv, test.csv and a summary (the cv folder:
mmtune.ensemble.cv).

`cv.refit`: then one more run, refit/, on every training post (train.full_fit) for the median of the folds'
best epochs. refit/test_predictions.csv is that model alone; test_with_refit.csv is the mean of the k fold
models and the refit model (k + 1 equal members); test.csv stays the fold models' mean.

`cv.pseudo_label`: two rounds. round1/fold-K is fold K trained as usual; its test predictions label the test posts
(that model never saw fold K's gold labels), and fold-K then trains on its training posts plus the confident test
posts (fold-K/pseudo_labels.csv and .json), validated on fold K as before. oof.csv and test.csv come from the
second round; pseudo_labels.json in the cv folder counts what each fold added, per class.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mmtune.config import Config
from mmtune.data.checks import load_posts
from mmtune.data.folds import make_folds, read_folds, write_folds
from mmtune.data.post import Post
from mmtune.data.textfile import file_digest
from mmtune.durations import budget_seconds
from mmtune.ensemble.cv import collect, fold_is_done, mean_of_tests
from mmtune.errors import InputError
from mmtune.evaluation.folders import FOLDS_FILE, fold_dir
from mmtune.evaluation.predictions import read_predictions, write_predictions
from mmtune.outputs import write_text_atomic
from mmtune.training import pseudo_labels
from mmtune.training.budget import TimeBudget, budget_clock
from mmtune.training.run_folder import locked, make_run_dir

log = logging.getLogger(__name__)

REFIT_DIR, REFIT_TEST_FILE = "refit", "test_with_refit.csv"
FIRST_ROUND_DIR = "round1"  # cv.pseudo_label: the folds' first round


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
    pseudo_labels: dict[str, Any] | None = None  # cv.pseudo_label: what cv_dir/pseudo_labels.json holds

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
    if cfg.cv.pseudo_label is not None and not cfg.data.test:
        raise InputError("cv.pseudo_label: needs data.test, the posts it labels")
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
    from mmtune.training.resume import check_resume  # torch: not for `import mmtune.api`

    with processes.main_process_first():  # the main process writes folds.csv, the others then read it
        folds_path, folds = shared_folds(cfg, cv_dir)
    result = CVResult(cv_dir=cv_dir, folds=selected_folds(cfg, folds))
    # train.time_budget is for the whole cv: every fold's run counts it from the start of this process, so each
    # fold gets what the folds before it left.
    budget = TimeBudget(budget_seconds(cfg.train.time_budget))
    pseudo = PseudoRound(cfg, cv_dir, folds, processes) if cfg.cv.pseudo_label is not None else None
    for fold in result.folds:
        run_dir = fold_dir(cv_dir, fold)
        fold_cfg = fold_config(cfg, cv_dir, fold, folds_path)
        if fold_is_done(run_dir, needs_test=bool(cfg.data.test)):
            check_resume(run_dir, fold_cfg, resume=True)  # a done fold of another config must not join this cv
            log.info(f"fold {fold}: done, skipped ({run_dir})")
            result.skipped.append(fold)
            continue
        extra: list[Post] = []
        if pseudo is not None:
            stopped = pseudo.first_round(fold_cfg, fold, budget)
            if stopped:
                result.stopped[fold] = stopped
                return result
            extra = pseudo.labelled_posts(fold, run_dir)
        run = train_fold(fold_cfg, cv_dir, run_dir, budget, extra)
        if isinstance(run, str):
            result.stopped[fold] = run
            return result  # the budget or a signal stops the whole cv; rerunning continues here
        result.trained.append(fold)
        result.configs[fold] = run.config
    collected = collect(cv_dir, folds, needs_test=bool(cfg.data.test), write=processes.is_main_process)
    result.oof, result.test, result.summary = collected.oof, collected.test, collected.summary
    if pseudo is not None:
        result.pseudo_labels = pseudo.summarize(sorted(result.trained + result.skipped))
    processes.wait_for_everyone()
    if cfg.cv.refit:
        _refit(cfg, cv_dir, result, processes)
    return result


def train_fold(fold_cfg: Config, cv_dir: Path, run_dir: Path, budget: TimeBudget,
               extra: Sequence[Post] = ()) -> Any:
    """Train or resume one run of the cv (a fold, a first-round fold); its TrainResult when it ended, else why it
    stopped (time_budget, signal). `extra`: posts added to its training posts (cv.pseudo_label)."""
    from accelerate.utils import broadcast_object_list

    from mmtune.recipes.train import train
    from mmtune.training import checkpoint as ckpt

    # The main process's clock decides for all: ranks that disagreed would wait on each other forever.
    if budget.seconds is not None and broadcast_object_list([budget.remaining()])[0] <= 0:
        return "time_budget"
    resume = ckpt.resolve(run_dir / "last") is not None
    log.info(f"{run_dir.relative_to(cv_dir)}: {'resuming' if resume else 'training'} in {run_dir}")
    run = train(fold_cfg, resume=resume, name=f"{cv_dir.resolve().name}/{run_dir.relative_to(cv_dir)}",
                extra_train=extra)
    return run if run.stopped in ("finished", "early_stopping") else run.stopped


class PseudoRound:
    """cv.pseudo_label (training/pseudo_labels): fold K's first round, an ordinary fold run in round1/fold-K,
    labels the test posts; fold K itself then trains on its training posts plus the confident ones. A killed cv
    resumes either round: a done first round is kept, and its test predictions give the same labels again."""

    def __init__(self, cfg: Config, cv_dir: Path, folds: dict[str, int], processes: Any) -> None:
        self.cfg, self.cv_dir, self.folds, self.processes = cfg, cv_dir, folds, processes
        self.settings = cfg.cv.pseudo_label
        data = cfg.data
        self.train_posts = load_posts(data.train, data.train_images, data, labels=data.labels,
                                      require_label=True).require_posts("data.train")
        self.test_posts = load_posts(data.test, data.test_images, data, labels=data.labels).require_posts("data.test")
        self.digest = functools.cache(file_digest)  # every fold compares the same images

    def first_dir(self, fold: int) -> Path:
        return fold_dir(self.cv_dir / FIRST_ROUND_DIR, fold)

    def first_round(self, fold_cfg: Config, fold: int, budget: TimeBudget) -> str | None:
        """Train (or keep) fold `fold`'s first round; why it stopped when it did not end."""
        from mmtune.training.resume import check_resume

        run_dir = self.first_dir(fold)
        first_cfg = replace(fold_cfg, output_dir=str(run_dir), cv=replace(fold_cfg.cv, pseudo_label=None))
        if fold_is_done(run_dir, needs_test=True):
            check_resume(run_dir, first_cfg, resume=True)
            return None
        run = train_fold(first_cfg, self.cv_dir, run_dir, budget)
        return run if isinstance(run, str) else None

    def labelled_posts(self, fold: int, run_dir: Path) -> list[Post]:
        """The test posts fold `fold` adds to its training posts, recorded in run_dir (pseudo_labels.csv/json)."""
        source = self.first_dir(fold) / "test_predictions.csv"
        validation = [post for post in self.train_posts if self.folds.get(post.id) == fold]
        training = sum(1 for k in self.folds.values() if k != fold)
        chosen = pseudo_labels.select(read_predictions(source), self.test_posts, validation, training,
                                      self.settings, self.cfg.cv.group_by, self.digest)
        if self.processes.is_main_process:
            make_run_dir(run_dir)
            pseudo_labels.write(run_dir, chosen, source.relative_to(self.cv_dir), self.settings)
        self.processes.wait_for_everyone()
        log.info(pseudo_labels.describe(fold, chosen, self.settings))
        return chosen.posts

    def summarize(self, folds: list[int]) -> dict[str, Any]:
        """cv_dir/pseudo_labels.json: each done fold's counts (its pseudo_labels.json) and the totals per class."""
        per_fold = {k: record for k in folds if (record := pseudo_labels.read_counts(fold_dir(self.cv_dir, k)))}
        summary = {"threshold": self.settings.threshold, "max_fraction": self.settings.max_fraction,
                   "per_class_total": pseudo_labels.class_totals(per_fold),
                   "folds": {str(k): record for k, record in per_fold.items()}}
        if self.processes.is_main_process:
            write_text_atomic(self.cv_dir / pseudo_labels.COUNTS_FILE, json.dumps(summary, indent=1))
        return summary


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
