"""`mmtune folds`: folds.csv of a data file, stratified by label and grouped by caption and image."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mmtune.config import Config
from mmtune.data.checks import load_posts
from mmtune.data.folds import make_folds, write_folds
from mmtune.outputs import check_outputs


@dataclass
class FoldsResult:
    folds: dict[str, int]  # post id -> fold
    labels: dict[str, str | None]  # post id -> label
    k: int


def folds(cfg: Config, data: Path, images: Path | None, out: Path, k: int | None = None, seed: int | None = None,
          config_file: Path | None = None) -> FoldsResult:
    """Write `out`; k and seed default to cv.folds and seed."""
    k = k if k is not None else cfg.cv.folds
    seed = seed if seed is not None else cfg.seed
    check_outputs({"--out": out}, {"data": data, "--config": config_file})
    posts = load_posts(data, images, cfg.data, labels=cfg.data.labels, require_label=True).require_posts()
    assigned = make_folds(posts, k=k, seed=seed, group_by=cfg.cv.group_by)
    write_folds(assigned, out)
    return FoldsResult(assigned, {p.id: p.label for p in posts}, k)
