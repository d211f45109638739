"""What evaluation reads from run and cv folders: the cv folder's layout, a run's metrics history, the cv summary.

The cv recipe writes a cv folder (fold-K/ runs, oof.csv, test.csv, cv_summary.json); the report and the
ensemble read it. A folder may come from a teammate or a Kaggle dataset, so a damaged file is bad input.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmtune.errors import InputError
from mmtune.files import IsNotRegular, read_regular

OOF_FILE, TEST_FILE, SUMMARY_FILE, FOLDS_FILE = "oof.csv", "test.csv", "cv_summary.json", "folds.csv"
# A run folder's files that others read: the resolved config, the validation and test predictions.
RUN_CONFIG, VAL_PREDICTIONS, TEST_PREDICTIONS = "config.yaml", "val_predictions.csv", "test_predictions.csv"
# What marks an export folder (mmtune export): its manifest (labels, members, layout).
EXPORT_MANIFEST = "mmtune_export.json"


def fold_dir(cv_dir: Path, fold: int) -> Path:
    return cv_dir / f"fold-{fold}"


def folder_kind(path: Path) -> str | None:
    """"run" (a train run: its config.yaml), "cv" (a cv folder: its summary or oof.csv), "export" (an export
    folder: its manifest), or None."""
    if (path / EXPORT_MANIFEST).is_file():
        return "export"
    if (path / RUN_CONFIG).is_file():
        return "run"
    if (path / SUMMARY_FILE).is_file() or (path / OOF_FILE).is_file():
        return "cv"
    return None


def model_source(path: Path) -> tuple[str, Path]:
    """What a prediction input stands for: ("run" | "cv", its folder) when its models can predict another file
    (the folder itself, or its oof.csv / val_predictions.csv), else ("file", path)."""
    if path.is_dir():
        return folder_kind(path) or "cv", path
    kind = folder_kind(path.parent)
    if (kind, path.name) in (("cv", OOF_FILE), ("run", VAL_PREDICTIONS)):
        return kind, path.parent
    return "file", path


def cv_folds(cv_dir: Path) -> list[int]:
    """The folds whose models made the cv folder's oof.csv and test.csv (its cv_summary.json names them)."""
    path = cv_dir / SUMMARY_FILE
    if not path.is_file():
        raise InputError(f"{cv_dir}: no {SUMMARY_FILE}: not a cv folder, or its cv has not finished a fold yet "
                         "(run mmtune cv until it prints 'cv done')")
    return [int(k) for k in read_cv_summary(path)["folds"]]


def _read_text(path: Path) -> str:
    try:
        return read_regular(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except IsNotRegular as exc:  # a FIFO would block the report forever
        raise InputError(f"{path}: is {exc}, not a file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror})") from None


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: invalid JSON at column {exc.colno} ({exc.msg})") from None
    except RecursionError:
        raise InputError(f"{where}: JSON nested too deeply") from None
    except ValueError:  # an integer over Python's 4,300-digit limit
        raise InputError(f"{where}: a JSON number with too many digits") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """The records of a run's metrics.jsonl (none when it has no such file)."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        record = _parse_json(line, f"{path}:{number}")
        if not isinstance(record, dict) or not _is_number(record.get("step")):
            raise InputError(f"{path}:{number}: a metrics record is a JSON object with a numeric 'step'")
        records.append(record)
    return records


def read_json_file(path: Path) -> Any:
    """A JSON file from a run folder (an ensemble's summary), read strictly: a damaged one is InputError."""
    return _parse_json(_read_text(path), str(path))


def read_cv_summary(path: Path) -> dict[str, Any]:
    summary = _parse_json(_read_text(path), str(path))
    if not _is_cv_summary(summary):
        raise InputError(f"{path}: not a summary written by mmtune cv (fold numbers, macro_f1, per_class_f1)")
    return summary


def _is_cv_summary(summary: Any) -> bool:
    """The fields the report reads: fold numbers (they name the fold-K folders) and F1 figures."""
    try:
        folds, macro, per_class = summary["folds"], summary["macro_f1"], summary["per_class_f1"]
        numbers = [macro["mean"], macro["std"], *(macro["folds"][str(k)] for k in folds),
                   *(value for row in per_class.values() for value in row["folds"])]
    except (KeyError, TypeError, AttributeError):
        return False
    fold_numbers = all(isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in folds)
    return bool(folds) and fold_numbers and all(_is_number(value) for value in numbers)
