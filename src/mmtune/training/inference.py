"""Batches of prepared examples and class probabilities from a classifier: what training's evaluation and
`mmtune predict` share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from mmtune.models.base import Example
from mmtune.objectives import Objective


class _Indexed(Dataset):
    def __init__(self, examples: Sequence[Example]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> tuple[int, Example]:
        return index, self.examples[index]


class BatchCollator:
    """The kind's collate plus the two tensors the loop needs: dataset positions and targets."""

    def __init__(self, classifier: nn.Module, train: bool) -> None:
        self.classifier = classifier
        self.train = train

    def __call__(self, items: list[tuple[int, Example]]) -> dict[str, Any]:
        examples = [example for _, example in items]
        batch = self.classifier.collate(examples, train=self.train)
        batch["index"] = torch.tensor([index for index, _ in items])
        batch["target"] = torch.tensor([example.target for example in examples])
        return batch


def make_loader(classifier: nn.Module, examples: Sequence[Example], batch_size: int, seed: int,
                num_workers: int = 0, sampler: Sampler | None = None, train: bool = False) -> DataLoader:
    # Why a private generator: DataLoader draws a seed from the global RNG whenever an iterator
    # starts; that would shift dropout masks between an interrupted+resumed run and a straight one.
    return DataLoader(_Indexed(examples), batch_size=batch_size, sampler=sampler, shuffle=False,
                      collate_fn=BatchCollator(classifier, train), num_workers=num_workers,
                      generator=torch.Generator().manual_seed(seed))


def eval_batch_size(train_batch_size: int) -> int:
    """Without gradients a batch takes less memory: evaluation and prediction run twice the training batch."""
    return max(1, train_batch_size * 2)


def predict_probs(model: nn.Module, loader: DataLoader, objective: Objective, labels: list[str],
                  accelerator: Accelerator) -> tuple[np.ndarray, np.ndarray]:
    """[N, K] class probabilities and targets in dataset order, gathered over processes once each.

    The model is left in eval mode: a caller that trains on puts it back into train mode."""
    model.eval()
    indices, probs, targets = [], [], []
    with torch.no_grad():
        for batch in loader:
            index, target = batch.pop("index"), batch.pop("target")
            outputs = model(batch)
            prob = objective.class_log_probs(outputs.float(), labels).exp()
            index, prob, target = accelerator.gather_for_metrics((index, prob, target))
            indices.append(index.cpu())
            probs.append(prob.cpu())
            targets.append(target.cpu())
    order = torch.cat(indices).argsort()
    return torch.cat(probs)[order].numpy().astype(np.float64), torch.cat(targets)[order].numpy()
