"""`mmtune report`: one self-contained HTML page of a run, cv or tune folder."""

from __future__ import annotations

from pathlib import Path

from mmtune.config import load_config
from mmtune.errors import InputError
from mmtune.evaluation.report import write_report
from mmtune.outputs import check_outputs, config_inputs
from mmtune.recipes.tune_page import is_tune_folder, report_tune_folder


def report_inputs(run_dir: Path) -> dict[str, Path]:
    """The files `report` reads: the run's (or every fold's) records, and the data files its config names."""
    folders = [run_dir, *sorted(run_dir.glob("fold-*"))]
    files = [path for folder in folders for path in sorted(folder.glob("*"))
             if path.suffix in {".yaml", ".json", ".jsonl", ".csv"} and path.is_file()]
    named: dict[str, Path] = {f"run file {path.relative_to(run_dir)}": path for path in files}
    for config_path in (p for p in files if p.name == "config.yaml"):
        try:
            data_files = config_inputs(load_config(config_path))
        except InputError:
            continue  # the report itself names a damaged config
        named |= {f"{key} of {config_path}": path for key, path in data_files.items() if path is not None}
    return named


def report(run_dir: Path, out: Path | None = None, gallery_size: int = 120) -> Path:
    """Write the page (default: RUN_DIR/report.html); --out never overwrites a file the report reads."""
    if is_tune_folder(run_dir):  # a `mmtune tune` folder: its study's page
        return report_tune_folder(run_dir, out)
    check_outputs({"--out": out}, report_inputs(run_dir))
    return write_report(run_dir, out, gallery_size=gallery_size)
