"""`mmtune predict`: a finished run's best weights on a data file -> class probabilities (and a prediction CSV).

Its own small path, no training loop: the run's saved config and best/ weights, the classifier they make, a
loader over the prepared posts with the classifier's collate, and the forward pass in inference mode.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn

from mmtune.compat import allow_mixed_precision
from mmtune.config import Config, load_saved_config
from mmtune.data.checks import load_posts
from mmtune.errors import InputError
from mmtune.evaluation.predictions import Predictions, write_predictions
from mmtune.objectives import get_objective
from mmtune.recipes.train import build_model
from mmtune.serving.bundle import is_export
from mmtune.training import checkpoint as ckpt
from mmtune.training.inference import eval_batch_size, make_loader, predict_probs
from mmtune.training.loop import resolve_mixed_precision


def load_run(run_dir: Path) -> tuple[Config, Path]:
    """The run's saved config and its best/ checkpoint, whose weights are checked against the run's labels
    (a damaged or edited run folder is named before the data is read)."""
    config_path = run_dir / "config.yaml"
    if not config_path.exists():
        raise InputError(f"{run_dir}: not a run folder (no config.yaml)")
    best = ckpt.resolve(run_dir / "best")
    if best is None:
        raise InputError(f"{run_dir}: no best/ checkpoint yet (the run has not evaluated once)")
    cfg = load_saved_config(config_path)
    weights = best / ckpt.WEIGHTS
    ckpt.check_labels(ckpt.check_safetensors(weights), list(cfg.data.labels or []), weights)
    return cfg, best


def predict(run_dir: Path, data: Path, images: Path | None = None, out: Path | None = None,
            tta_flip: bool = False, batch_size: int | None = None) -> Predictions:
    """Predict a data file with a finished run's best weights; with `out`, also write the prediction CSV.

    `batch_size`: posts per forward pass (default: twice the run's train.batch_size). The returned predictions
    carry the file's gold labels when every post has one (the CSV does not: it is what a submission reads)."""
    if is_export(run_dir):
        from mmtune.recipes.exported import predict_export

        return predict_export(run_dir, data, images, out, tta_flip)
    cfg, best = load_run(run_dir)
    labels = list(cfg.data.labels or [])
    posts = load_posts(data, images, cfg.data, labels=labels).require_posts()
    classifier = build_model(cfg, labels)
    ckpt.load_weights(classifier, best, labels)
    precision = resolve_mixed_precision(cfg.train.mixed_precision)
    allow_mixed_precision(precision)  # an ensemble's runs, predicted in one process, may differ in precision
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=precision)
    model = accelerator.prepare(classifier)
    with accelerator.main_process_first():  # under a launcher: rank 0 fills the feature cache, the others read it
        examples = classifier.prepare(posts, train=False)
    size = batch_size or eval_batch_size(cfg.train.batch_size)
    loader = accelerator.prepare(make_loader(classifier, examples, size, cfg.seed, cfg.train.num_workers))
    probs = _class_probs(cfg, model, loader, labels, accelerator)
    if tta_flip or cfg.train.tta_flip:
        # Test-time augmentation: the mean of the plain and the mirrored images' probabilities.
        classifier.flip_images = True
        probs = (probs + _class_probs(cfg, model, loader, labels, accelerator)) / 2
        classifier.flip_images = False
    ids = [e.id for e in examples]
    if out is not None and accelerator.is_main_process:  # every rank holds all probabilities (gathered)
        write_predictions(out, Predictions(ids, probs, labels))
    accelerator.wait_for_everyone()
    gold = [e.post.label for e in examples]
    return Predictions(ids, probs, labels, gold=gold if None not in gold else None, path=out or data)


def _class_probs(cfg: Config, model: nn.Module, loader: object, labels: list[str],
                 accelerator: Accelerator) -> np.ndarray:
    return predict_probs(model, loader, get_objective(cfg.train.loss), labels, accelerator)[0]
