"""Checkpoints that survive a kill: written to a temporary folder, then swapped in by rename.

`last/` holds everything a resumed run needs (trainable weights, optimizer, scheduler, grad scaler,
RNG states per process, loop position, config hash); `best/` holds the trainable weights of the
best evaluation. A kill at any moment leaves either the old or the new folder complete: the swap is
`last -> last.old`, `last.tmp -> last`, then `last.old` is removed, and `resolve` falls back to
`last.old` when a kill landed between the two renames.

Run folders are shared (teammates, Kaggle datasets), so everything read back is untrusted: weights and RNG
states are safetensors, the loop state is checked JSON, and optimizer / scheduler / scaler states load with
`torch.load(weights_only=True)`, which unpickles tensors and plain containers only. A file that is damaged,
tampered with or does not fit the model is an InputError naming it.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import zipfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from mmtune.errors import InputError
from mmtune.files import read_regular

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


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path = "checkpoint") -> None:
    """Copy saved tensors into the model; `source` (the file) is named when they do not fit it."""
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    unknown = [name for name in state if name not in tensors]
    if unknown:
        raise InputError(f"{source}: has tensors the model lacks ({', '.join(unknown[:3])}); "
                         "the weights belong to another model or config.yaml was edited")
    reshaped = [f"{name} {list(value.shape)} vs {list(tensors[name].shape)}" for name, value in state.items()
                if value.shape != tensors[name].shape]
    if reshaped:
        raise InputError(f"{source}: tensor shapes do not fit the model built from the run's config "
                         f"({'; '.join(reshaped[:3])}); the weights belong to another model or config.yaml was edited")
    with torch.no_grad():
        for name, value in state.items():
            tensors[name].copy_(value.to(tensors[name].device, tensors[name].dtype))


def load_weights(model: nn.Module, folder: Path, labels: list[str]) -> None:
    """Load folder's trainable weights into the model, checking they were trained for these labels."""
    path = folder / WEIGHTS
    tensors, meta = read_safetensors(path)
    check_labels(meta, labels, path)
    load_trainable_state(model, tensors, path)


def check_labels(meta: dict[str, str], labels: list[str], path: Path) -> None:
    """The weights were trained for `labels`, in this order (their file records the order)."""
    saved = _json_meta(meta, "labels", path)
    if saved is not None and saved != list(labels):
        raise InputError(f"{path}: trained for labels {saved}, but the run's config.yaml has {list(labels)}; "
                         "config.yaml was edited or the weights belong to another run")


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file; a missing, cut or damaged file is an InputError naming it."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}, dict(handle.metadata() or {})
    except FileNotFoundError:
        raise InputError(f"{path}: missing from the run folder") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"{path}: damaged or not a safetensors file ({_reason(exc)})") from None


def _json_meta(meta: dict[str, str], key: str, path: Path) -> Any:
    if key not in meta:
        return None
    try:
        return json.loads(meta[key])
    except json.JSONDecodeError:
        raise InputError(f"{path}: metadata '{key}' is not valid JSON") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "the file ends too early"
    text = " ".join(str(exc).split()) or "unreadable"  # why: never a bare exception class name
    return text if len(text) <= 160 else text[:157] + "..."


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


def rng_file(folder: Path, process_index: int) -> Path:
    return folder / f"rng-{process_index}.safetensors"


def write_rng(path: Path, state: dict[str, Any]) -> None:
    """RNG states as tensors + JSON metadata (never pickled: a pickle runs code when read back)."""
    version, words, gauss = state["python"]
    name, keys, pos, has_gauss, cached = state["numpy"]
    tensors = {"torch": state["torch"], "python": torch.tensor(words, dtype=torch.int64),
               "numpy": torch.from_numpy(np.asarray(keys, dtype=np.int64))}
    for index, cuda in enumerate(state.get("cuda", [])):
        tensors[f"cuda.{index}"] = cuda
    meta = {"python": json.dumps([version, gauss]), "numpy": json.dumps([name, pos, has_gauss, cached])}
    save_file(tensors, str(path), metadata=meta)


def read_rng(path: Path) -> dict[str, Any]:
    """What `write_rng` wrote, in the form `set_rng_state` takes; a damaged file is an InputError naming it."""
    tensors, meta = read_safetensors(path)
    try:
        version, gauss = _json_meta(meta, "python", path)
        name, pos, has_gauss, cached = _json_meta(meta, "numpy", path)
        state = {"python": (version, tuple(int(v) for v in tensors["python"].tolist()), gauss),
                 "numpy": (name, tensors["numpy"].numpy().astype(np.uint32), pos, has_gauss, cached),
                 "torch": tensors["torch"]}
        cuda = sorted((int(key.split(".")[1]), value) for key, value in tensors.items() if key.startswith("cuda."))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: not an RNG state mmtune wrote ({_reason(exc)})") from None
    if cuda:
        state["cuda"] = [value for _, value in cuda]
    return state


def apply_rng_state(state: dict[str, Any], path: Path) -> None:
    """`set_rng_state`, naming the file when a generator refuses its saved state."""
    try:
        set_rng_state(state)
    except (TypeError, ValueError, RuntimeError, OverflowError) as exc:
        raise InputError(f"{path}: not an RNG state mmtune wrote ({_reason(exc)})") from None


def check_checkpoint(folder: Path) -> None:
    """Open every file `--resume` reads from `folder` (without loading the tensors): a damaged or tampered run
    folder is named in seconds, before minutes of data loading and model building."""
    read_state(folder)
    for path in [folder / WEIGHTS, *sorted(folder.glob("rng-*.safetensors"))]:
        check_safetensors(path)
    for name in ("optimizer.pt", "scheduler.pt", "scaler.pt"):
        if name != "scaler.pt" or (folder / name).exists():
            _load_plain(folder / name, mmap=True)


def check_safetensors(path: Path) -> dict[str, str]:
    """The metadata of a safetensors file whose header and size agree (the tensors are not read)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except FileNotFoundError:
        raise InputError(f"{path}: missing from the run folder") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"{path}: damaged or not a safetensors file ({_reason(exc)})") from None


def _load_plain(path: Path, mmap: bool = False) -> Any:
    """torch.load of tensors and plain containers only (a pickle of anything else is refused, never run)."""
    if mmap and path.is_file() and not zipfile.is_zipfile(path):  # mmap reads torch's zip format only
        raise InputError(f"{path}: not a checkpoint mmtune can load safely (damaged, cut short or not a torch "
                         "checkpoint)")
    try:
        return torch.load(path, weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise InputError(f"{path}: missing from the run folder") from None
    except pickle.UnpicklingError:
        raise InputError(f"{path}: not a checkpoint mmtune can load safely (it holds objects other than "
                         "tensors and plain values, or is not a torch file)") from None
    except Exception as exc:  # why: whatever a tampered or cut file makes torch.load raise, the file is at fault
        raise InputError(f"{path}: not a checkpoint mmtune can load safely ({_reason(exc)})") from None


def load_state_into(target: Any, path: Path) -> None:
    """Restore an optimizer, scheduler or grad scaler from `path`, unpickling tensors and plain containers only."""
    state = _load_plain(path)
    expected = target.state_dict()
    if not isinstance(state, dict) or set(state) != set(expected):
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise InputError(f"{path}: not a saved {path.stem} state (keys {keys}, "
                         f"expected {sorted(expected)})")
    wrong = [key for key, value in state.items() if not _same_kind(value, expected[key])]
    if wrong:
        raise InputError(f"{path}: unexpected value types for {', '.join(map(str, wrong[:3]))}")
    try:
        target.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
        raise InputError(f"{path}: does not fit this run ({_reason(exc)})") from None


def _same_kind(value: Any, expected: Any) -> bool:
    # Why: a scheduler's load_state_dict sets whatever it is given as attributes.
    numbers = (int, float)
    if isinstance(expected, numbers) and not isinstance(expected, bool):
        return isinstance(value, numbers) and not isinstance(value, bool)
    if expected is None or value is None:
        return True
    return isinstance(value, type(expected))


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


def write_state(folder: Path, state: LoopState) -> None:
    (folder / STATE).write_text(json.dumps(asdict(state), indent=1), encoding="utf-8")


def read_state(folder: Path) -> LoopState:
    """The loop state of a checkpoint; cut short, edited or of another shape is an InputError naming the file."""
    path = folder / STATE
    try:
        data = json.loads(read_regular(path).decode("utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: missing from the run folder") from None
    except (OSError, ValueError, RecursionError) as exc:  # IsNotRegular is an OSError; ValueError: bytes, digits
        raise InputError(f"{path}: damaged, not JSON ({_reason(exc)})") from None
    names = {f.name for f in fields(LoopState)}
    if not isinstance(data, dict) or set(data) != names:
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise InputError(f"{path}: not a trainer state (keys {got}, expected {sorted(names)})")
    wrong = [name for name, check in _STATE_CHECKS.items() if not check(data[name])]
    if wrong:
        raise InputError(f"{path}: invalid values for {', '.join(wrong)}")
    return LoopState(**data)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_STATE_CHECKS = {
    "epoch": _count, "batches_done": _count, "global_step": _count,
    "best_value": lambda v: v is None or _number(v),
    "best_step": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= -1,
    "evals_without_improvement": _count, "finished": lambda v: isinstance(v, bool),
    "config_hash": lambda v: isinstance(v, str),
    "losses_since_eval": lambda v: isinstance(v, list) and all(_number(x) for x in v),
    "history": lambda v: isinstance(v, list) and all(isinstance(x, dict) and _number(x.get("step")) for x in v),
}


def _fsync_tree(folder: Path) -> None:
    # Why: rename is atomic, but without fsync a power loss may leave renamed files empty.
    for path in folder.iterdir():
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
