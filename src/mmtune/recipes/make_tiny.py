"""`mmtune make-tiny`: a tiny random model of a family, for smoke tests."""

from __future__ import annotations

from pathlib import Path

from mmtune.errors import InputError


def make_tiny_model(family: str, out: Path, seed: int = 0) -> Path:
    """The model folder written; `out` must be new, empty, or an earlier tiny model (it has a config.json)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: is a file; make-tiny writes a model folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "config.json").is_file():
        raise InputError(f"{out}: is a folder with other files (no config.json); give a new or empty folder")
    from mmtune.testing.tiny import make_tiny  # torch and transformers: only once the folder is known to be sound

    return make_tiny(family, out, seed=seed)
