"""`mmtune export RUN OUT`: a run or a cv folder as a folder others can load (serving/bundle.py says what is in it;
recipes/exported.py loads it back)."""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmtune import __version__
from mmtune.errors import InputError
from mmtune.evaluation.folders import fold_dir
from mmtune.files import read_regular
from mmtune.recipes.predict import load_run
from mmtune.recipes.train import build_model
from mmtune.serving import bundle
from mmtune.serving.card import model_card
from mmtune.training import checkpoint as ckpt

log = logging.getLogger(__name__)


@dataclass
class ExportResult:
    out: Path
    members: list[str]
    labels: list[str]


def run_folders(source: Path) -> list[tuple[str, Path]]:
    """(member name, run folder): the run itself, or every fold of a cv folder that has a best/ checkpoint."""
    if (source / "config.yaml").exists():
        return [("run", source)]
    folds = sorted((int(p.name[5:]), p) for p in source.glob("fold-*") if p.name[5:].isdigit() and p.is_dir())
    found = [(f"fold-{k}", fold_dir(source, k)) for k, p in folds if ckpt.resolve(p / "best") is not None]
    if not found:
        raise InputError(f"{source}: neither a run folder (config.yaml) nor a cv folder with a trained fold")
    return found


def export(source: Path, out: Path, merge: bool = False, command: str | None = None) -> ExportResult:
    """Write the export folder `out` (new or empty); it appears whole or not at all (built next to it, renamed)."""
    source, out = Path(source), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: already exists; give a new or empty folder")
    runs = [(name, run_dir, *load_run(run_dir)) for name, run_dir in run_folders(source)]
    labels = list(runs[0][2].data.labels or [])
    if any(list(cfg.data.labels or []) != labels for _, _, cfg, _ in runs):
        raise InputError(f"{source}: the folds were trained for different label orders")
    first = runs[0][2]
    if merge and (len(runs) > 1 or not first.model.kind.startswith("vlm-") or not first.model.lora.enabled):
        raise InputError("--merge: only a vlm-* run (not a cv folder) with LoRA adapters (model.lora.enabled) has "
                         "adapters to merge")
    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        manifest = _write(staging, source, runs, labels, merge, command)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.exists():
        out.rmdir()
    os.replace(staging, out)
    return ExportResult(out, manifest["members"], labels)


def _write(staging: Path, source: Path, runs: list[tuple[str, Path, Any, Path]], labels: list[str], merge: bool,
           command: str | None) -> dict[str, Any]:
    copied = bundle.copy_bases([cfg for _, _, cfg, _ in runs], staging)
    metrics, extras = {}, {}
    for name, _, cfg, best in runs:
        classifier = build_model(cfg, labels)
        ckpt.load_weights(classifier, best, labels)
        bundle.write_member(staging, bundle.Member(name, cfg, best / ckpt.WEIGHTS),
                            bundle.pointed_config(cfg, copied, classifier))
        metrics[name] = _read_metrics(best / "metrics.json")
        if len(runs) == 1:
            from mmtune.serving.adapters import export_adapters  # peft's save format: only for a run with LoRA

            extras = export_adapters(classifier, cfg, staging, merge=merge, copied=copied)
    cfg = runs[0][2]
    manifest: dict[str, Any] = {
        "kind": cfg.model.kind, "labels": labels, "members": [name for name, *_ in runs], "bases": dict(copied),
        "source": str(source.resolve()), "mmtune": __version__, "command": command or _command(),
        "requires": sorted({s for s in bundle.used_sources(cfg).values() if s.startswith("pypi:")}), **extras}
    bundle.write_manifest(staging, manifest)
    (staging / "README.md").write_text(model_card(manifest, cfg, metrics), encoding="utf-8")
    return manifest


def _command() -> str:
    return " ".join(shlex.quote(arg) for arg in ["mmtune", *sys.argv[1:]])


def _read_metrics(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(read_regular(path).decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        log.warning(f"{path}: missing or unreadable; the model card has no scores for this run")
        return {}
    return data if isinstance(data, dict) else {}
