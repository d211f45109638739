"""Shared by the objective tests: a loss built the way the training loop builds it, from train.* settings."""

from collections.abc import Sequence

import torch

from mmtune.config import TrainConfig
from mmtune.objectives import get_objective


def build(name: str, counts: Sequence[int], labels: list[str], **train: object) -> torch.nn.Module:
    return get_objective(name).build_loss(counts, labels, TrainConfig(loss=name, **train))


def logits_and_targets(batch: int = 16, classes: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, classes, generator=generator) * 2
    return logits, torch.randint(0, classes, (batch,), generator=generator)
