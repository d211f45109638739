"""`train.batch_size: 0`: find the largest batch that fits, keep the effective batch by accumulation.

The probe runs one forward and backward pass on the largest real training posts (longest captions,
most images first) at the candidate size; Accelerate's `find_executable_batch_size` halves on an
out-of-memory error and tries again.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from accelerate.utils import find_executable_batch_size, release_memory
from torch import nn

from mmtune.models.base import Example

log = logging.getLogger(__name__)

DEFAULT_START = 64


@dataclass(frozen=True)
class BatchPlan:
    batch_size: int
    grad_accum: int
    effective: int


def plan_batches(batch_size: int, effective: int, start: int = DEFAULT_START) -> BatchPlan:
    """The plan once a batch size is known: accumulation keeps the effective batch (rounded up)."""
    batch_size = min(batch_size, effective) if effective else batch_size
    accum = max(1, math.ceil(effective / batch_size)) if effective else 1
    return BatchPlan(batch_size=batch_size, grad_accum=accum, effective=batch_size * accum)


def find_batch_size(classifier: nn.Module, examples: Sequence[Example], device: torch.device,
                    start: int = DEFAULT_START) -> int:
    """The largest batch size <= start for which a training step on the heaviest posts fits in memory."""
    heaviest = sorted(examples, key=lambda e: (len(e.post.images), len(e.text)), reverse=True)
    classifier.to(device)
    classifier.train()

    def halve() -> int:
        halve.size = max(1, halve.size // 2)  # type: ignore[attr-defined]
        return halve.size  # type: ignore[attr-defined]

    halve.size = start  # type: ignore[attr-defined]

    @find_executable_batch_size(starting_batch_size=start, reduce_batch_size_fn=halve)
    def probe(batch_size: int) -> int:
        log.info(f"trying batch size {batch_size}")
        chunk = [heaviest[i % len(heaviest)] for i in range(batch_size)]
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v
                 for k, v in classifier.collate(chunk, train=True).items()}
        # Any scalar of the outputs costs the same activations and gradients as the real loss.
        classifier(batch).float().square().mean().backward()
        classifier.zero_grad(set_to_none=True)
        release_memory()
        return batch_size

    found = probe()
    log.info(f"batch size {found} fits")
    return found
