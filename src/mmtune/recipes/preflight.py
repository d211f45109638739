"""What recipes check before any work. Light on purpose (no torch, no network): the CLI runs these before it
imports the recipe that loads the heavy libraries, so bad input is named in a fraction of a second."""

from __future__ import annotations

from pathlib import Path

from mmtune.config import Config, load_saved_config
from mmtune.errors import InputError
from mmtune.models.sources import check_config_models
from mmtune.outputs import check_outputs, check_run_files


def check_run(cfg: Config) -> None:
    """A run (train, cv, sft, dpo, build-vlm): its input files are there, its outputs are sane, and the model
    folders it names are model folders of the right kind."""
    check_run_files(cfg)
    check_config_models(cfg)


def check_predict(run_dir: Path, data: Path, out: Path) -> None:
    """`predict`: --out clashes with no input (the data, the run's config and weights), the data file is a file,
    and the models the run was trained from are still there."""
    run_files = {f"run file {path.relative_to(run_dir)}": path
                 for path in [run_dir / "config.yaml", *sorted(run_dir.glob("best/*"))]}
    check_outputs({"--out": out}, {"data": data, **run_files})
    if not data.is_file():
        raise InputError(f"{data}: data file not found" if not data.exists() else f"{data}: not a file")
    if (run_dir / "config.yaml").is_file():
        check_config_models(load_saved_config(run_dir / "config.yaml"))
