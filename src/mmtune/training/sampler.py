"""Epoch-seeded index sampling: the same order for the same (seed, epoch), whatever ran before.

The sampler owns its `torch.Generator`, so drawing an order never advances the global RNG that
dropout and augmentation use, and a run resumed at epoch e sees the order an uninterrupted run saw.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler


def epoch_seed(seed: int, epoch: int) -> int:
    """A 64-bit seed mixed from (seed, epoch); seed + epoch would give (s, e + 1) the order of (s + 1, e)."""
    state = np.random.SeedSequence([seed % 2**64, epoch % 2**64]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 32 | int(state[1])


class EpochSampler(Sampler[int]):
    """Indices 0..n-1 in an order fixed by (seed, epoch); with `weights`, n draws with replacement.

    `weights` (one per sample, e.g. from `balanced_weights`) make sample i drawn with probability
    weights[i] / sum(weights): class-balanced sampling. Call `set_epoch` before each epoch.
    """

    def __init__(self, n: int, seed: int, shuffle: bool = True, weights: Sequence[float] | None = None) -> None:
        if n < 0:
            raise ValueError(f"sampler size must be >= 0, got {n}")
        self.n, self.seed, self.shuffle, self.epoch = int(n), int(seed), bool(shuffle), 0
        self.weights = None if weights is None else _check_weights(weights, self.n)
        if self.weights is not None and not self.shuffle:
            raise ValueError("weighted sampling draws at random; it cannot be combined with shuffle=False")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle or self.n == 0:
            return iter(range(self.n))
        generator = torch.Generator()
        generator.manual_seed(epoch_seed(self.seed, self.epoch))
        if self.weights is None:
            order = torch.randperm(self.n, generator=generator)
        else:
            order = torch.multinomial(self.weights, self.n, replacement=True, generator=generator)
        return iter(order.tolist())


def _check_weights(weights: Sequence[float], n: int) -> torch.Tensor:
    tensor = torch.as_tensor(weights, dtype=torch.float64)
    if tensor.shape != (n,):
        raise ValueError(f"sampler weights must have one value per sample ({n}), got shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all() or (tensor < 0).any() or (n > 0 and tensor.sum() <= 0):
        raise ValueError("sampler weights must be finite, non-negative and not all zero")
    return tensor


def balanced_weights(targets: Sequence[int], power: float = 1.0) -> list[float]:
    """Per-sample weights 1 / count(class)^power.

    power 1: every class is drawn equally often; 0.5: square-root balancing, which still favours large
    classes but less (with 77 text-sarcasm posts, full balancing repeats each about 35 times an epoch).
    """
    if power < 0:
        raise ValueError(f"balancing power must be >= 0, got {power}")
    counts = Counter(int(t) for t in targets)
    return [1.0 / counts[int(t)] ** power for t in targets]
