"""Checkpoints that survive a kill: written to a temporary folder, then swapped in by rename.

`last/` holds everything a resumed run needs (trainable weights, optimizer, scheduler, grad scaler,
RNG states per process, loop position, config hash); `best/` holds the trainable weights of the
best evaluation. A kill at any moment leaves either the old or the new folder complete: the swap is
`last -> last.old`, `last.tmp -> last`, then `last.old` is removed, and `resolve` falls back to
`last.old` when a kill landed between the two renames.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

WEIGHTS = "trainable.safetensors"
STATE = "trainer_state.json"


@dataclass
class LoopState:
    """Where the loop is: enough to continue exactly."""

    epoch: int = 0
    batches_done: int = 0  # batches of `epoch` already consumed
    global_step: int = 0  # optimizer steps
    best_value: float | None = None
    best_step: int = -1
    evals_without_improvement: int = 0
    finished: bool = False
    config_hash: str = ""
    losses_since_eval: list[float] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)


def trainable_state(model: nn.Module, names: Iterable[str]) -> dict[str, torch.Tensor]:
    """The parameters training may change, plus the persistent buffers of the modules that own them
    (a fine-tuned BatchNorm's running statistics belong with its weights)."""
    wanted = set(names)
    params = {name: p.detach().to("cpu").contiguous() for name, p in model.named_parameters() if name in wanted}
    missing = wanted - set(params)
    if missing:
        raise RuntimeError(f"trainable parameters not found in the model: {sorted(missing)[:5]}")
    for prefix, module in model.named_modules():
        owned = [f"{prefix}.{n}" if prefix else n for n, _ in module.named_parameters(recurse=False)]
        if not any(name in wanted for name in owned):
            continue
        for name, buffer in module.named_buffers(recurse=False):
            if buffer is not None and name not in module._non_persistent_buffers_set:
                params[f"{prefix}.{name}" if prefix else name] = buffer.detach().to("cpu").contiguous()
    return params


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    unknown = [name for name in state if name not in tensors]
    if unknown:
        raise RuntimeError(f"checkpoint has parameters the model lacks: {unknown[:5]}")
    with torch.no_grad():
        for name, value in state.items():
            tensors[name].copy_(value.to(tensors[name].device, tensors[name].dtype))


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def staging_dir(final: Path) -> Path:
    return final.with_name(final.name + ".tmp")


def begin(final: Path) -> Path:
    """A fresh staging folder next to `final`."""
    tmp = staging_dir(final)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def commit(final: Path) -> None:
    """Swap the staging folder in; the previous checkpoint stays usable until the new one is in place."""
    tmp, old = staging_dir(final), final.with_name(final.name + ".old")
    _fsync_tree(tmp)
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def resolve(final: Path) -> Path | None:
    """The usable checkpoint folder: `final`, or `final.old` if a kill interrupted the swap."""
    old = final.with_name(final.name + ".old")
    if (final / STATE).exists() or (final / WEIGHTS).exists():
        return final
    if (old / STATE).exists() or (old / WEIGHTS).exists():
        return old
    return None


def write_weights(folder: Path, weights: dict[str, torch.Tensor], meta: dict[str, Any] | None = None) -> None:
    save_file(weights, str(folder / WEIGHTS), metadata={k: json.dumps(v) for k, v in (meta or {}).items()})


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / WEIGHTS))


def write_state(folder: Path, state: LoopState) -> None:
    (folder / STATE).write_text(json.dumps(asdict(state), indent=1), encoding="utf-8")


def read_state(folder: Path) -> LoopState:
    return LoopState(**json.loads((folder / STATE).read_text(encoding="utf-8")))


def _fsync_tree(folder: Path) -> None:
    # Why: rename is atomic, but without fsync a power loss may leave renamed files empty.
    for path in folder.iterdir():
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
