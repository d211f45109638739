"""Which config changes a run survives: a resumed run (and a done cv fold) must have the config it started with.

The run folder's config.yaml holds the resolved config (the label order, an automatic batch plan); the config a
command asks for may leave those to the run. A value left to the run is not compared: the saved one is what the
run chose for it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from mmtune.config import Config, flat_dict, load_saved_config
from mmtune.errors import InputError
from mmtune.training import checkpoint as ckpt

# Keys that may change when a run is resumed: they steer how long or how it runs, not what it learns
# (cv.only: which folds a cv session runs).
RESUMABLE_CHANGES = {
    "output_dir", "train.epochs", "train.time_budget", "train.early_stopping_patience", "train.num_workers",
    "train.extract_workers", "train.extract_runtime",
    "train.eval_every_steps", "train.save_every_steps", "train.log_with", "cv.only",
}


def config_hash(cfg: Config) -> str:
    flat = {k: v for k, v in flat_dict(cfg).items() if k not in RESUMABLE_CHANGES}
    return hashlib.sha256(yaml.safe_dump(flat, sort_keys=True).encode()).hexdigest()[:16]


def left_to_the_run(requested: dict[str, object]) -> set[str]:
    """The keys whose requested value asks the run to choose: no data.labels (inferred from the data), and
    train.batch_size 0 (the batch-size finder picks the size and the accumulation steps)."""
    keys = {"data.labels"} if requested.get("data.labels") is None else set()
    if requested.get("train.batch_size") == 0:
        keys |= {"train.batch_size", "train.grad_accum"}
    return keys


def config_changes(saved: Config, requested: Config) -> list[str]:
    """`key: saved -> requested` for every key that differs in what the run learns."""
    old, new = flat_dict(saved), flat_dict(requested)
    free = RESUMABLE_CHANGES | left_to_the_run(new)
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k) and k not in free]


def check_resume(run_dir: Path, cfg: Config, resume: bool) -> None:
    """A fresh run never overwrites one; a resumed run must have the config it started with."""
    saved = run_dir / "config.yaml"
    if not resume:
        if ckpt.resolve(run_dir / "last") is not None:
            raise InputError(f"{run_dir} already holds a run (last/): pass --resume to continue it, "
                             "or set another output_dir")
        return
    if not saved.exists():
        return
    changed = config_changes(load_saved_config(saved), cfg)
    if changed:
        raise InputError(f"{saved}: the config changed since the run started ({'; '.join(changed)}); "
                         "resume with the same config or start a new output_dir")
