"""`mmtune report`: one self-contained HTML page of a run, cv or tune folder, or of many runs compared (DIR DIR
..., or a folder holding runs)."""

from __future__ import annotations

from pathlib import Path

from mmtune.config import load_config
from mmtune.errors import InputError
from mmtune.evaluation.folders import folder_kind
from mmtune.evaluation.leaderboard import discover
from mmtune.evaluation.report import write_report
from mmtune.evaluation.report_many import write_many_report
from mmtune.outputs import check_outputs, config_inputs
from mmtune.recipes.runs import read_board
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


def report_folders(dirs: list[Path], out: Path | None = None, gallery_size: int = 120,
                   gold: Path | None = None) -> Path:
    """One run, cv or tune folder: its page. Several folders, or one that holds runs: the page comparing every run, cv
    folder and ensemble found (default --out: the one folder's report.html)."""
    one = len(dirs) == 1 and (is_tune_folder(dirs[0]) or folder_kind(dirs[0]) is not None or not discover(dirs)[0])
    if one:
        return report(dirs[0], out, gallery_size)  # one run, cv or tune folder (or nothing to compare: it says why)
    if gallery_size < 0:
        raise InputError(f"the gallery size (--gallery) must be 0 or more, got {gallery_size}")
    if out is None:
        if len(dirs) != 1:
            raise InputError(f"--out: the page of {len(dirs)} folders needs a file name (--out compare.html)")
        out = dirs[0] / "report.html"
    board = read_board(dirs, gold=gold)
    inputs = {name: path for entry in board.entries for name, path in _entry_inputs(entry.path).items()}
    check_outputs({"--out": out}, inputs | ({"--gold": gold} if gold else {}))
    return write_many_report(board.entries, board.keys, board.skipped, out, gallery_size)


def _entry_inputs(path: Path) -> dict[str, Path]:
    """What the page reads of an entry: a folder's records and data files, or an ensemble's files."""
    if path.is_dir():
        return report_inputs(path)
    siblings = [path, path.with_suffix(".csv"), path.with_name(path.stem + ".oof.csv")]
    return {f"ensemble file {p}": p for p in siblings}
