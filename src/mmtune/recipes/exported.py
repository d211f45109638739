"""An export folder (recipes/export.py wrote it) loaded back: a Predictor for `mmtune serve` and `api.load`, and
`mmtune predict EXPORT FILE` on it."""

from __future__ import annotations

from pathlib import Path

import torch

from mmtune.data.checks import load_posts
from mmtune.evaluation.predictions import Predictions, write_predictions
from mmtune.recipes.train import build_model
from mmtune.serving import bundle
from mmtune.serving.predictor import Predictor, scorer, without_disk_cache


def load_export(folder: Path, batch_size: int | None = None, for_service: bool = False) -> Predictor:
    """An export folder's classifiers, weights loaded, on the GPU when there is one. `for_service`: frozen
    towers' features are never cached on disk."""
    _, members = bundle.read_members(folder)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    scorers = []
    for member in members:
        if for_service:
            member.config = without_disk_cache(member.config)
        scorers.append(scorer(member.config, bundle.load_classifier(member, build_model), device))
    labels = list(members[0].config.data.labels or [])
    return Predictor(scorers, labels, device, batch_size or max(1, members[0].config.train.batch_size * 2))


def predict_export(folder: Path, data: Path, images: Path | None = None, out: Path | None = None,
                   tta_flip: bool = False) -> Predictions:
    """`mmtune predict EXPORT FILE`: the same file, columns and probabilities as `predict` on the run."""
    return predict_loaded(load_export(folder), data, images, out, tta_flip)


def predict_loaded(predictor: Predictor, data: Path, images: Path | None = None, out: Path | None = None,
                   tta_flip: bool = False) -> Predictions:
    cfg = predictor.scorers[0].config
    posts = load_posts(data, images, cfg.data, labels=predictor.labels).require_posts()
    probs = predictor.predict(posts, tta_flip=tta_flip)
    predictions = Predictions([p.id for p in posts], probs, predictor.labels, path=out or data)
    if out is not None:
        write_predictions(out, predictions)
    return predictions
