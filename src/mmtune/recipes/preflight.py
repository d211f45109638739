"""What recipes check before any work. Light on purpose (no torch, no network): the CLI runs these before it
imports the recipe that loads the heavy libraries, so bad input is named in a fraction of a second."""

from __future__ import annotations

from pathlib import Path

from mmtune.config import Config, load_saved_config
from mmtune.errors import InputError
from mmtune.evaluation.folders import EXPORT_MANIFEST, RUN_CONFIG, cv_folds, fold_dir, folder_kind
from mmtune.models.sources import check_config_models
from mmtune.outputs import check_outputs, check_run_files


def check_run(cfg: Config) -> None:
    """A run (train, cv, sft, dpo, build-vlm): its input files are there, its outputs are sane, and the model
    folders it names are model folders of the right kind."""
    check_run_files(cfg)
    check_config_models(cfg)


def predict_kind(source: Path) -> str:
    """What `predict SOURCE` predicts with: "run" (a run folder), "cv" (a cv folder: the mean of its folds),
    "export" (an export folder: mmtune export) or "ensemble" (an ensemble's summary JSON, whose saved blend re-runs
    its input folders)."""
    if source.is_file() and source.suffix.lower() == ".json":
        return "ensemble"
    kind = folder_kind(source) if source.is_dir() else None
    if kind is None:
        raise InputError(f"{source}: not a run folder (no {RUN_CONFIG}), a cv folder (no cv_summary.json), an "
                         "export folder (no mmtune_export.json) or the .json that mmtune ensemble wrote")
    return kind


def model_runs(source: Path) -> list[Path]:
    """The run folders whose models `predict SOURCE` runs: the run, the cv's folds, or those of the ensemble's
    inputs (its saved blend is read and checked here, before any model is loaded)."""
    kind = predict_kind(source)
    if kind == "run":
        return [source]
    if kind == "export":
        return []  # its manifest and members are read and checked when it loads
    if kind == "cv":
        return [fold_dir(source, k) for k in cv_folds(source)]
    from mmtune.ensemble.saved import model_sources, read_saved_blend  # scikit-learn: only for an ensemble

    return [run for input_source in model_sources(read_saved_blend(source)) for run in model_runs(input_source.path)]


def check_predict(source: Path, data: Path, out: Path | None) -> None:
    """`predict`: --out clashes with no input (the data, the runs' configs and weights, the ensemble file), the
    data file is a file, and the models the runs were trained from are still there."""
    if not data.is_file():
        raise InputError(f"{data}: data file not found" if not data.exists() else f"{data}: not a file")
    runs = model_runs(source)
    inputs: dict[str, Path | None] = {"data": data, "ensemble file": source if source.is_file() else None}
    if predict_kind(source) == "export":  # --out must not replace the export's manifest or a member's files
        inputs |= {f"export file {path.relative_to(source)}": path
                   for path in [source / EXPORT_MANIFEST, *sorted(source.glob("members/*/*"))]}
    base = source.parent if source.is_file() else source  # run files are named from here
    for run_dir in runs:
        inputs |= {f"run file {path.relative_to(base) if path.is_relative_to(base) else path}": path
                   for path in [run_dir / RUN_CONFIG, *sorted(run_dir.glob("best/*"))]}
    check_outputs({"--out": out}, inputs)
    for run_dir in runs:
        if not (run_dir / RUN_CONFIG).is_file():  # a cv folder copied without one of its fold runs
            raise InputError(f"{run_dir}: not a run folder (no {RUN_CONFIG})")
        check_config_models(load_saved_config(run_dir / RUN_CONFIG))
