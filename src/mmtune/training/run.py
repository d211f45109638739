"""`mmtune train` and `mmtune predict` as recipes: data -> classifier -> loop -> run folder.

Run folder (DESIGN.md): config.yaml (resolved: the label order is written in), folds.csv when the
validation split comes from folds, metrics.jsonl, best/, last/, val_predictions.csv,
test_predictions.csv when data.test is set, learning_curve.png.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import set_seed

from mmtune.config import Config, flat_dict, load_saved_config, save_config
from mmtune.data.checks import load_posts
from mmtune.data.folds import make_folds, read_folds, write_folds
from mmtune.data.labels import infer_labels
from mmtune.data.post import Post
from mmtune.errors import InputError
from mmtune.evaluation.figures import learning_curves
from mmtune.evaluation.predict import write_predictions
from mmtune.models.feature_cache import ExtractionStopped, extraction_budget
from mmtune.models.kinds import build_classifier, check_kind
from mmtune.objectives import get_objective
from mmtune.training import checkpoint as ckpt
from mmtune.training.batch_size import BatchPlan, find_batch_size, plan_batches
from mmtune.training.budget import TimeBudget, parse_duration
from mmtune.training.loop import TrainingLoop, agreed_stop, make_accelerator, resolve_mixed_precision
from mmtune.training.run_folder import locked, make_run_dir

log = logging.getLogger(__name__)

# Keys that may change when a run is resumed: they steer how long or how it runs, not what it learns.
RESUMABLE_CHANGES = {
    "output_dir", "train.epochs", "train.time_budget", "train.early_stopping_patience", "train.num_workers",
    "train.eval_every_steps", "train.save_every_steps", "train.log_with",
}


@dataclass
class Split:
    labels: list[str]
    train: list[Post]
    val: list[Post]
    test: list[Post] | None


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


def config_hash(cfg: Config) -> str:
    flat = {k: v for k, v in flat_dict(cfg).items() if k not in RESUMABLE_CHANGES}
    return hashlib.sha256(yaml.safe_dump(flat, sort_keys=True).encode()).hexdigest()[:16]


def build_model(cfg: Config, labels: list[str]) -> torch.nn.Module:
    """The classifier of `model.kind` with the outputs `train.loss` needs; refuses labels the objective cannot use
    before any model is loaded."""
    objective = get_objective(cfg.train.loss)
    objective.check_labels(labels)
    return build_classifier(cfg, labels, objective.output_size(len(labels)))


def check_resume(run_dir: Path, cfg: Config, resume: bool) -> None:
    """A fresh run never overwrites one; a resumed run must have the config it started with."""
    saved = run_dir / "config.yaml"
    if not resume:
        if ckpt.resolve(run_dir / "last") is not None:
            raise InputError(f"{run_dir} already holds a run (last/): pass --resume to continue it, "
                             "or set another output_dir")
        return
    if not saved.exists():
        return
    old, new = flat_dict(load_saved_config(saved)), flat_dict(cfg)
    changed = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
               if old.get(k) != new.get(k) and k not in RESUMABLE_CHANGES]
    if changed:
        raise InputError(f"{saved}: the config changed since the run started ({'; '.join(changed)}); "
                         "resume with the same config or start a new output_dir")


def train(cfg: Config, resume: bool = False) -> str:
    """Train one run end to end; returns why the loop stopped."""
    run_dir = Path(cfg.output_dir)
    check_kind(cfg)  # the kind and its config section, before minutes of data loading
    set_seed(cfg.seed)
    accelerator = make_accelerator(cfg, run_dir)
    if accelerator.is_main_process:
        make_run_dir(run_dir)
    accelerator.wait_for_everyone()
    with locked(run_dir, accelerator):
        return _train_in(run_dir, cfg, accelerator, resume)


def _train_in(run_dir: Path, cfg: Config, accelerator: Accelerator, resume: bool) -> str:
    """`train` once output_dir exists and this command holds it."""
    last = ckpt.resolve(run_dir / "last") if resume else None
    if last is not None:  # a damaged run folder is named before minutes of data loading
        load_saved_config(run_dir / "config.yaml")
        ckpt.check_checkpoint(last)
    split = load_split(cfg, run_dir, write=accelerator.is_main_process)
    cfg = replace(cfg, data=replace(cfg.data, labels=split.labels))
    if resume and cfg.train.batch_size == 0 and (run_dir / "config.yaml").exists():
        cfg = _with_batch_plan(cfg, load_saved_config(run_dir / "config.yaml").train)  # found when the run started
    check_resume(run_dir, cfg, resume)
    log.info(f"{len(split.train)} training and {len(split.val)} validation posts, labels {split.labels}")
    set_seed(cfg.seed)
    classifier = build_model(cfg, split.labels)
    with accelerator.main_process_first():  # rank 0 fills the feature cache, the others read it
        prepared = prepare_within_budget(cfg, classifier, split)
    if agreed_stop(accelerator, None if prepared else "time_budget"):
        return "time_budget"
    train_examples, val_examples, test_examples = prepared
    if cfg.train.batch_size == 0:
        cfg = _with_batch_plan(cfg, _find_batch_plan(cfg, classifier, train_examples, accelerator))
        set_seed(cfg.seed)  # the probe must not change what the run draws afterwards
    if accelerator.is_main_process:
        save_config(cfg, run_dir / "config.yaml")
    loop = TrainingLoop(cfg, classifier, accelerator, run_dir, config_hash(cfg))
    loop.setup(train_examples, val_examples, resume=resume)
    stopped = loop.train()
    if stopped in ("finished", "early_stopping"):
        _write_outputs(cfg, run_dir, loop, split, val_examples, test_examples, accelerator)
    loop.cleanup()
    return stopped


def prepare_within_budget(cfg: Config, classifier: object, split: Split) -> tuple[list, list, list | None] | None:
    """The train, val and test examples; None when train.time_budget ran out while frozen towers encoded them.

    Why the test posts too, before training: their encoding pass belongs to the budget as much as the others',
    and the final predictions then take only the head's time. What was encoded stays in the feature cache."""
    try:
        with extraction_budget(TimeBudget(parse_duration(cfg.train.time_budget) if cfg.train.time_budget else None)):
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
                   test_examples: list | None, accelerator: Accelerator) -> None:
    best = ckpt.resolve(run_dir / "best")
    if best is None:
        return
    if accelerator.is_main_process:
        probs = read_val_probs(best, len(val_examples), len(split.labels))
        write_predictions(run_dir / "val_predictions.csv", [e.id for e in val_examples], probs, split.labels,
                          gold=[e.post.label for e in val_examples])
        if loop.state.history:
            (run_dir / "learning_curve.png").write_bytes(learning_curves({"run": loop.state.history}, cfg.train.metric))
    if split.test:
        ckpt.load_weights(accelerator.unwrap_model(loop.model), best, split.labels)
        probs = predict_examples(loop, test_examples)
        if accelerator.is_main_process:
            write_predictions(run_dir / "test_predictions.csv", [e.id for e in test_examples], probs, split.labels)
    accelerator.wait_for_everyone()


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


def predict_examples(loop: TrainingLoop, examples: list) -> np.ndarray:
    loader = loop.accelerator.prepare(loop.make_loader(examples, None, train=False))
    return loop.predict_probs(loader)[0]


def predict(run_dir: Path, data: Path, images: Path | None, out: Path, tta_flip: bool = False) -> Path:
    """Predict a data file with a finished run's best weights."""
    config_path = run_dir / "config.yaml"
    if not config_path.exists():
        raise InputError(f"{run_dir}: not a run folder (no config.yaml)")
    best = ckpt.resolve(run_dir / "best")
    if best is None:
        raise InputError(f"{run_dir}: no best/ checkpoint yet (the run has not evaluated once)")
    cfg = load_saved_config(config_path)
    labels = list(cfg.data.labels or [])
    weights = best / ckpt.WEIGHTS  # a damaged or edited run folder is named before the data is read
    ckpt.check_labels(ckpt.check_safetensors(weights), labels, weights)
    posts = load_posts(data, images, cfg.data, labels=labels).require_posts()
    classifier = build_model(cfg, labels)
    ckpt.load_weights(classifier, best, labels)
    accelerator = Accelerator(cpu=not torch.cuda.is_available(),
                              mixed_precision=resolve_mixed_precision(cfg.train.mixed_precision))
    loop = TrainingLoop(cfg, classifier, accelerator, run_dir, config_hash(cfg))
    loop.model = accelerator.prepare(classifier)
    with accelerator.main_process_first():  # under a launcher: rank 0 fills the feature cache, the others read it
        examples = classifier.prepare(posts, train=False)
    probs = predict_examples(loop, examples)
    if tta_flip or cfg.train.tta_flip:
        # Test-time augmentation: the mean of the plain and the mirrored images' probabilities.
        classifier.flip_images = True
        probs = (probs + predict_examples(loop, examples)) / 2
        classifier.flip_images = False
    if accelerator.is_main_process:  # every rank holds all probabilities (gathered); one writes them
        write_predictions(out, [e.id for e in examples], probs, labels)
    accelerator.wait_for_everyone()
    return out
