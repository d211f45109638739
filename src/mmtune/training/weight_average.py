"""An exponential moving average of the trainable weights (`train.ema_decay`).

The raw weights train; the average is what gets evaluated, chosen as best/, and predicted with. On small data sets
the raw weights of a head jump from epoch to epoch, and the epoch early stopping keeps is partly luck; their
average is smoother and scores higher on held-out posts (benchmarks/RESULTS.md, third round of head defaults).

The first update copies the weights (as torch's AveragedModel does), so the random initial head is never part of
the average; every later one moves the average by (1 - decay) towards the weights. Why no ramp of the decay (timm's
min(decay, (1 + t) / (10 + t))): on heads of a few hundred steps it keeps the decay far below the setting for the
whole run, and measured no better than the raw weights (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn

from mmtune.errors import InputError
from mmtune.training.checkpoint import read_safetensors

AVERAGE_FILE = "weight_average.safetensors"


class WeightAverage:
    """The average of `params` (named): updated after each optimizer step, swapped in to evaluate and save."""

    def __init__(self, params: dict[str, nn.Parameter], decay: float) -> None:
        self.params = params
        self.decay = decay
        self.shadow = {name: p.detach().clone() for name, p in params.items()}
        self.updates = 0
        # Listed once: the update runs after every optimizer step.
        self._pairs = (list(self.shadow.values()), [params[name] for name in self.shadow])

    def current_decay(self) -> float:
        return self.decay if self.updates else 0.0

    def update(self) -> None:
        get_ema_multi_avg_fn(self.current_decay())(*self._pairs, None)
        self.updates += 1

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The model holds the averaged weights inside the block, its raw weights again after it."""
        raw = {name: p.detach().clone() for name, p in self.params.items()}
        with torch.no_grad():
            for name, p in self.params.items():
                p.copy_(self.shadow[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for name, p in self.params.items():
                    p.copy_(raw[name])

    def save(self, folder: Path) -> None:
        tensors = {name: t.detach().to("cpu").contiguous() for name, t in self.shadow.items()}
        save_file(tensors, str(folder / AVERAGE_FILE),
                  metadata={"updates": json.dumps(self.updates), "decay": json.dumps(self.decay)})

    def load(self, folder: Path) -> bool:
        """Restore from a checkpoint folder; False when it has no average (a run saved with train.ema_decay 0)."""
        path = folder / AVERAGE_FILE
        if not path.exists():
            return False
        tensors, meta = read_safetensors(path)
        if set(tensors) != set(self.shadow):
            raise InputError(f"{path}: averages other parameters than the model trains "
                             f"({sorted(set(tensors) ^ set(self.shadow))[:3]})")
        for name, tensor in tensors.items():
            if tensor.shape != self.shadow[name].shape:
                raise InputError(f"{path}: '{name}' has shape {list(tensor.shape)}, the model's is "
                                 f"{list(self.shadow[name].shape)}")
            self.shadow[name].copy_(tensor)
        try:
            updates = json.loads(meta.get("updates", "null"))
        except ValueError:
            updates = None
        if not isinstance(updates, int) or isinstance(updates, bool) or updates < 0:
            raise InputError(f"{path}: metadata 'updates' is not a count")
        self.updates = updates
        return True
