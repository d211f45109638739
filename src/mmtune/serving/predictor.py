"""Class probabilities for posts from an export's classifiers, in this process: what `predict EXPORT`,
`api.load` and the HTTP service share.

No DataLoader and no Accelerator: one process, the posts in hand. Each member prepares, collates and runs
the posts in chunks of `batch_size`; members' probabilities are averaged (a cv folder's folds, as its test.csv).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from mmtune.config import Config
from mmtune.data.post import Post
from mmtune.objectives import Objective, get_objective
from mmtune.training.loop import resolve_mixed_precision


@dataclass
class Scorer:
    """One classifier and the objective that maps its outputs to class log-probabilities."""

    config: Config
    classifier: nn.Module
    objective: Objective


def scorer(cfg: Config, classifier: nn.Module, device: torch.device) -> Scorer:
    return Scorer(cfg, classifier.to(device).eval(), get_objective(cfg.train.loss))


def without_disk_cache(cfg: Config) -> Config:
    """The config a service builds from: frozen towers' features are not cached on disk (requests write nothing)."""
    return replace(cfg, train=replace(cfg.train, feature_cache=False))


class Predictor:
    def __init__(self, scorers: Sequence[Scorer], labels: list[str], device: torch.device, batch_size: int) -> None:
        self.scorers = list(scorers)
        self.labels = list(labels)
        self.device = device
        self.batch_size = max(1, batch_size)

    def predict(self, posts: Sequence[Post], tta_flip: bool = False) -> np.ndarray:
        """[len(posts), K] probabilities (float64), the mean over members (and over flips with `tta_flip`)."""
        if not posts:
            return np.zeros((0, len(self.labels)))
        total = np.zeros((len(posts), len(self.labels)))
        for item in self.scorers:
            flips = (False, True) if tta_flip or item.config.train.tta_flip else (False,)
            total += sum(self._probs(item, posts, flip) for flip in flips) / len(flips)
        return total / len(self.scorers)

    def _probs(self, item: Scorer, posts: Sequence[Post], flip: bool) -> np.ndarray:
        classifier = item.classifier
        classifier.flip_images = flip
        try:
            examples = classifier.prepare(posts, train=False)
            chunks = []
            with torch.inference_mode(), _autocast(item.config, self.device):
                for start in range(0, len(examples), self.batch_size):
                    batch = classifier.collate(examples[start:start + self.batch_size], train=False)
                    outputs = classifier({k: _to(v, self.device) for k, v in batch.items()})
                    chunks.append(item.objective.class_log_probs(outputs.float(), self.labels).exp().cpu())
        finally:
            classifier.flip_images = False
        return torch.cat(chunks).numpy().astype(np.float64)


def _to(value: object, device: torch.device) -> object:
    return value.to(device) if isinstance(value, torch.Tensor) else value


@contextlib.contextmanager
def _autocast(cfg: Config, device: torch.device) -> Iterator[None]:
    """The run's mixed precision on a GPU, as `mmtune predict` runs it (Accelerate's autocast); none on CPU."""
    setting = resolve_mixed_precision(cfg.train.mixed_precision)
    if device.type != "cuda" or setting == "no":
        yield
        return
    with torch.autocast("cuda", dtype=torch.bfloat16 if setting == "bf16" else torch.float16):
        yield
