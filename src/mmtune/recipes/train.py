"""`mmtune train`: data -> classifier -> loop -> run folder.

Run folder (DESIGN.md): config.yaml (resolved: the label order and an automatic batch plan are written in),
folds.csv when the validation split comes from folds, metrics.jsonl, best/, last/, val_predictions.csv,
test_predictions.csv when data.test is set, learning_curve.png.

`train.full_fit`: every training post trains for train.epochs, best/ is the last epoch, and without data.val no
val_predictions.csv is written (the evaluations ran on the training posts).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from mmtune.config import Config, load_saved_config, save_config
from mmtune.data.checks import load_posts
from mmtune.data.folds import make_folds, read_folds, write_folds
from mmtune.data.labels import infer_labels
from mmtune.data.post import Post
from mmtune.durations import budget_seconds
from mmtune.errors import InputError
from mmtune.evaluation.figures import learning_curves
from mmtune.evaluation.predictions import Predictions, write_predictions
from mmtune.models.feature_cache import ExtractionStopped, extraction_budget
from mmtune.models.kinds import build_classifier, check_kind
from mmtune.objectives import get_objective
from mmtune.recipes.scores import Scores, best_scores
from mmtune.training import checkpoint as ckpt
from mmtune.training.batch_size import BatchPlan, find_batch_size, plan_batches
from mmtune.training.budget import TimeBudget, budget_clock
from mmtune.training.loop import TrainingLoop, agreed_stop, make_accelerator
from mmtune.training.resume import check_resume, config_hash
from mmtune.training.run_folder import locked, make_run_dir

log = logging.getLogger(__name__)


@dataclass
class Split:
    labels: list[str]
    train: list[Post]
    val: list[Post]
    test: list[Post] | None


@dataclass
class TrainResult:
    """Why the loop stopped (finished, early_stopping, time_budget or signal) and the config the run resolved:
    the one its config.yaml holds (label order, batch plan), which the caller's config leaves open."""

    stopped: str
    config: Config
    scores: Scores | None = None  # the best evaluation and the files written, when training ended


def load_split(cfg: Config, run_dir: Path, write: bool = True) -> Split:
    """Train/val/test posts and the label order; without data.val, a fold of train is held out.

    `write`: save the folds to run_dir/folds.csv (one process only: concurrent writers race on the file)."""
    data = cfg.data
    if not data.train:
        raise InputError("data.train: no training file given")
    train = load_posts(data.train, data.train_images, data, labels=data.labels,
                       require_label=True).require_posts("data.train")
    labels = list(data.labels) if data.labels else infer_labels(p.label for p in train)
    if len(labels) < 2:
        raise InputError(f"{data.train}: training needs at least 2 labels, found {labels}")
    # Checked before training: a test file without a usable post would end the run with no predictions.
    test = (load_posts(data.test, data.test_images, data, labels=labels).require_posts("data.test")
            if data.test else None)
    if data.val:
        val = load_posts(data.val, data.val_images or data.train_images, data, labels=labels,
                         require_label=True).require_posts("data.val")
        return Split(labels, train, val, test)
    if cfg.train.full_fit:  # every post trains; the loop's evaluations then measure the fit on them
        return Split(labels, train, list(train), test)
    if cfg.cv.folds_file:
        folds = read_folds(cfg.cv.folds_file, ids=[p.id for p in train])
    else:
        folds = make_folds(train, k=cfg.cv.folds, seed=cfg.seed, group_by=cfg.cv.group_by)
        if write:
            write_folds(folds, run_dir / "folds.csv")
    if cfg.train.val_fold not in set(folds.values()):
        known = sorted(set(folds.values()))
        raise InputError(f"train.val_fold: fold {cfg.train.val_fold} does not exist (folds: {known})")
    val = [p for p in train if folds[p.id] == cfg.train.val_fold]
    train = [p for p in train if folds[p.id] != cfg.train.val_fold]
    return Split(labels, train, val, test)


def build_model(cfg: Config, labels: list[str]) -> torch.nn.Module:
    """The classifier of `model.kind` with the outputs `train.loss` needs; refuses labels the objective cannot use
    before any model is loaded."""
    objective = get_objective(cfg.train.loss)
    objective.check_labels(labels)
    return build_classifier(cfg, labels, objective.output_size(len(labels)))


def train(cfg: Config, resume: bool = False, budget_from_call: bool = False,
          on_eval: Callable[[int, float], bool] | None = None, name: str | None = None,
          extra_train: Sequence[Post] = ()) -> TrainResult:
    """Train one run end to end. `budget_from_call`: train.time_budget counts from this call (a notebook)
    instead of the process start (a command). `on_eval(epoch, value)` sees every evaluation; True stops the run
    as early stopping does (`mmtune tune` prunes trials with it). `name`: the run's name in the trackers (default:
    the output folder's). `extra_train`: labelled posts added to the training posts only (cv.pseudo_label)."""
    run_dir = Path(cfg.output_dir)
    check_kind(cfg)  # the kind and its config section, before minutes of data loading
    with budget_clock() if budget_from_call else contextlib.nullcontext():
        set_seed(cfg.seed)
        accelerator = make_accelerator(cfg, run_dir, name)
        if accelerator.is_main_process:
            make_run_dir(run_dir)
        accelerator.wait_for_everyone()
        with locked(run_dir, accelerator):
            return _train_in(run_dir, cfg, accelerator, resume, on_eval, extra_train)


def _train_in(run_dir: Path, requested: Config, accelerator: Accelerator, resume: bool,
              on_eval: Callable[[int, float], bool] | None = None, extra_train: Sequence[Post] = ()) -> TrainResult:
    """`train` once output_dir exists and this command holds it."""
    saved = run_dir / "config.yaml"
    last = ckpt.resolve(run_dir / "last") if resume else None
    if last is not None:  # a damaged run folder is named before minutes of data loading
        load_saved_config(saved)
        ckpt.check_checkpoint(last)
    split = load_split(requested, run_dir, write=accelerator.is_main_process)
    if extra_train:
        split = replace(split, train=split.train + list(extra_train))
    cfg = replace(requested, data=replace(requested.data, labels=split.labels))
    if cfg.train.full_fit:
        cfg = replace(cfg, train=replace(cfg.train, early_stopping_patience=0))  # nothing held out to stop on
    check_resume(run_dir, cfg, resume)
    if resume and cfg.train.batch_size == 0 and saved.exists():
        cfg = _with_batch_plan(cfg, load_saved_config(saved).train)  # found when the run started
    log.info(f"{len(split.train)} training and {len(split.val)} validation posts, labels {split.labels}")
    set_seed(cfg.seed)
    classifier = build_model(cfg, split.labels)
    with accelerator.main_process_first():  # rank 0 fills the feature cache, the others read it
        prepared = prepare_within_budget(cfg, classifier, split)
    if agreed_stop(accelerator, None if prepared else "time_budget"):
        return TrainResult("time_budget", cfg)
    train_examples, val_examples, test_examples = prepared
    if cfg.train.batch_size == 0:
        cfg = _with_batch_plan(cfg, _find_batch_plan(cfg, classifier, train_examples, accelerator))
        set_seed(cfg.seed)  # the probe must not change what the run draws afterwards
    if accelerator.is_main_process:
        save_config(cfg, saved)
    loop = TrainingLoop(cfg, classifier, accelerator, run_dir, config_hash(cfg), on_eval)
    loop.setup(train_examples, val_examples, resume=resume)
    stopped = loop.train()
    scores = None
    if stopped in ("finished", "early_stopping"):
        _write_outputs(cfg, run_dir, loop, split, val_examples, test_examples)
        scores = best_scores(loop.state.history, cfg.train.metric, loop.state.best_step, run_dir)
    loop.cleanup()
    return TrainResult(stopped, cfg, scores)


def prepare_within_budget(cfg: Config, classifier: object, split: Split) -> tuple[list, list, list | None] | None:
    """The train, val and test examples; None when train.time_budget ran out while frozen towers encoded them.

    Why the test posts too, before training: their encoding pass belongs to the budget as much as the others',
    and the final predictions then take only the head's time. What was encoded stays in the feature cache."""
    try:
        with extraction_budget(TimeBudget(budget_seconds(cfg.train.time_budget))):
            return (classifier.prepare(split.train, train=True), classifier.prepare(split.val, train=False),
                    classifier.prepare(split.test, train=False) if split.test else None)
    except ExtractionStopped as stop:
        kept = f"kept in {stop.folder}" if stop.folder else "not kept: train.feature_cache is off"
        log.warning(f"time budget {cfg.train.time_budget} spent while computing {stop.desc} ({stop.done} of "
                    f"{stop.total} computed, {kept}); continue with --resume")
        return None


def _find_batch_plan(cfg: Config, classifier: object, examples: list, accelerator: Accelerator) -> BatchPlan:
    found = find_batch_size(classifier, examples, accelerator.device)
    # Every process must use the same size: the smallest that fitted anywhere.
    found = int(accelerator.gather(torch.tensor([found], device=accelerator.device)).min())
    effective = cfg.train.effective_batch_size or cfg.train.grad_accum * found * accelerator.num_processes
    plan = plan_batches(found, max(1, effective // accelerator.num_processes))
    log.info(f"automatic batch size: {plan.batch_size} x {plan.grad_accum} accumulation steps per process")
    return plan


def _with_batch_plan(cfg: Config, plan: BatchPlan | object) -> Config:
    return replace(cfg, train=replace(cfg.train, batch_size=plan.batch_size, grad_accum=plan.grad_accum))


def _write_outputs(cfg: Config, run_dir: Path, loop: TrainingLoop, split: Split, val_examples: list,
                   test_examples: list | None) -> None:
    best = ckpt.resolve(run_dir / "best")
    if best is None:
        return
    accelerator = loop.accelerator
    in_sample = cfg.train.full_fit and not cfg.data.val  # "validation" = training posts: no val_predictions.csv
    if accelerator.is_main_process:
        if not in_sample:
            write_val_predictions(run_dir, best, split, val_examples)
        if loop.state.history:
            (run_dir / "learning_curve.png").write_bytes(learning_curves({"run": loop.state.history}, cfg.train.metric))
    if split.test:
        ckpt.load_weights(accelerator.unwrap_model(loop.model), best, split.labels)
        probs = loop.predict_probs(accelerator.prepare(loop.make_loader(test_examples, None, train=False)))[0]
        if accelerator.is_main_process:
            write_predictions(run_dir / "test_predictions.csv",
                              Predictions([e.id for e in test_examples], probs, split.labels))
    accelerator.wait_for_everyone()


def write_val_predictions(run_dir: Path, best: Path, split: Split, val_examples: list) -> None:
    probs = read_val_probs(best, len(val_examples), len(split.labels))
    val = Predictions([e.id for e in val_examples], probs, split.labels, gold=[e.post.label for e in val_examples])
    write_predictions(run_dir / "val_predictions.csv", val)


def read_val_probs(best: Path, rows: int, labels: int) -> np.ndarray:
    """best/val_probs.npy, checked: plain float array (never a pickle) of one row per validation post."""
    path = best / "val_probs.npy"
    try:
        probs = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"{path}: missing from the run folder") from None
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: damaged or not a .npy array ({' '.join(str(exc).split())})") from None
    if probs.shape != (rows, labels) or probs.dtype.kind != "f" or not np.isfinite(probs).all():
        raise InputError(f"{path}: expected {rows} x {labels} finite probabilities, found {probs.dtype} "
                         f"{list(probs.shape)}; the file was damaged or belongs to another run")
    return probs
