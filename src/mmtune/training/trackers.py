"""Experiment trackers (`train.log_with`): which are installed, where they write, what a run is called there.

One rule for every verb (train, each fold of cv, sft, dpo, build-vlm): a run is named after its output folder
(a cv fold: `<cv folder>/fold-K`), never after the config's `name`, which every fold and every rerun share.
- TensorBoard writes its event files in the run folder itself, so `tensorboard --logdir runs` shows each run
  under its folder's path (runs/demo -> demo, runs/cv/fold-0 -> cv/fold-0) and a resumed run continues its curves.
- W&B names the run the same, in the project $WANDB_PROJECT (default mmtune), and keeps its files in
  run_dir/wandb; with WANDB_MODE=offline it needs no network (`wandb sync run_dir/wandb/offline-run-*` later).
A tracker asked for but not installed is said once per process (a cv's folds do not repeat it) and left out.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# tracker -> (the package it needs, the mmtune extra that installs it)
PACKAGES = {"tensorboard": ("tensorboard", "log"), "wandb": ("wandb", "wandb")}
_said_missing: set[str] = set()


def is_installed(package: str) -> bool:
    """Installed as a distribution, not just a folder of that name on the path (as Accelerate checks)."""
    if importlib.util.find_spec(package) is None:
        return False
    try:
        importlib.metadata.metadata(package)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def installed_trackers(names: Sequence[str]) -> list[str]:
    """The trackers of `names` that can run here; each missing one is named once, with how to install it."""
    found = []
    for name in names:
        package, extra = PACKAGES[name]
        if is_installed(package):
            found.append(name)
        elif name not in _said_missing:
            _said_missing.add(name)
            log.warning(f"train.log_with: {name} is not installed, so nothing is logged to it; "
                        f"pip install '{package}' (or the extra: pip install 'mmtune[{extra}]')")
    return found


def run_name(run_dir: Path, name: str | None = None) -> str:
    """What the trackers call the run: `name` (a cv fold: `<cv>/fold-K`), else the run folder's name."""
    return name or Path(run_dir).resolve().name


def wandb_settings(run_dir: Path, name: str) -> dict[str, Any]:
    """wandb.init's project, run name and folder (WANDB_MODE, WANDB_ENTITY and the like still apply)."""
    return {"project": os.environ.get("WANDB_PROJECT") or "mmtune", "name": name, "dir": str(Path(run_dir).resolve())}


def accelerate_trackers(names: Sequence[str], run_dir: Path, name: str) -> list[Any]:
    """Accelerate tracker objects for the installed `names`: TensorBoard's events in run_dir, W&B as above."""
    from accelerate.tracking import TensorBoardTracker, WandBTracker

    trackers: list[Any] = []
    folder = Path(run_dir).resolve()
    for tracker in installed_trackers(names):
        if tracker == "tensorboard":
            # Accelerate writes to logging_dir/run_name: the parent and the folder's own name put it in run_dir.
            trackers.append(TensorBoardTracker(folder.name, folder.parent))
        else:
            settings = wandb_settings(run_dir, name)
            trackers.append(WandBTracker(settings.pop("project"), **settings))
    return trackers
