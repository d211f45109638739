"""Submissions (`mmtune submit`): a prediction file -> the ViMMSD results.zip (CodaLab) or a Kaggle-style CSV.

results.zip holds one file, results.json = {"results": {"<id>": "<label>", ...}, "phase": "dev"|"test"}.
Every id must appear once, every label must be a known one, and with `ids_from` (the test data file)
every post of that file must be predicted and nothing else: a submission that fails these is rejected
by the competition after a day's wait, so it is rejected here instead.
"""

from __future__ import annotations

import csv
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from mmtune.config import DataConfig
from mmtune.data.readers import iter_records
from mmtune.errors import InputError
from mmtune.evaluation.predictions import Predictions, read_predictions, training_columns
from mmtune.outputs import atomic_open, check_outputs
from mmtune.sarcasm import SARCASM_LABELS

PHASES = ("dev", "test")
RESULTS_JSON = "results.json"


def check_coverage(sub: Predictions, data: Path, source: Path, data_cfg: DataConfig | None = None) -> None:
    """Every post of the data file predicted, and no post it does not have (read as `data.format` and
    `data.columns` say)."""
    data_cfg = data_cfg or DataConfig()
    expected = [record.id for record in iter_records(data, data_cfg.columns, data_cfg.format)]
    predicted = set(sub.ids)
    missing = [pid for pid in expected if pid not in predicted]
    if missing:
        raise InputError(f"{source}: {len(missing)} posts of {data} have no prediction (e.g. id '{missing[0]}')")
    extra = sorted(predicted - set(expected))
    if extra:
        raise InputError(f"{source}: {len(extra)} ids are not in {data} (e.g. id '{extra[0]}')")


def _sort_key(pid: str) -> tuple[int, int | str]:
    # Only ASCII digits: str.isdigit() also accepts '²' and Arabic-Indic digits, which int() refuses or reads
    # as another number.
    return (0, int(pid)) if pid.isascii() and pid.isdigit() else (1, pid)


def _sorted_decisions(sub: Predictions) -> list[tuple[str, str]]:
    """(id, decided label) pairs, numeric ids first in number order."""
    return sorted(zip(sub.ids, sub.predicted), key=lambda pair: _sort_key(pair[0]))


def results_json(sub: Predictions, phase: str) -> dict:
    if phase not in PHASES:
        raise InputError(f"--phase must be one of {list(PHASES)}, got '{phase}'")
    return {"results": dict(_sorted_decisions(sub)), "phase": phase}


def write_results_zip(sub: Predictions, phase: str, out: Path) -> Path:
    body = json.dumps(results_json(sub, phase), ensure_ascii=False, indent=1)
    with atomic_open(out, "wb") as handle, zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(RESULTS_JSON, body)
    return out


def write_kaggle_csv(sub: Predictions, out: Path, id_column: str = "id", label_column: str = "label") -> Path:
    with atomic_open(out, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([id_column, label_column])
        writer.writerows(_sorted_decisions(sub))
    return out


@dataclass
class SubmitRequest:
    predictions: Path
    out: Path
    phase: str = "test"
    fmt: str = "vimmsd"
    ids_from: Path | None = None
    labels: list[str] | None = None
    data: DataConfig | None = None  # how to read ids_from (format, column names)
    force: bool = False  # submit training predictions (an OOF file) all the same


def submit(request: SubmitRequest) -> Predictions:
    """Validate and write; ViMMSD submissions accept only the four ViMMSD labels unless `labels` says otherwise."""
    if request.fmt not in ("vimmsd", "csv"):
        raise InputError(f"--format must be vimmsd or csv, got '{request.fmt}'")
    check_outputs({"--out": request.out}, {"predictions": request.predictions, "--ids": request.ids_from})
    known = request.labels or (list(SARCASM_LABELS) if request.fmt == "vimmsd" else None)
    sub = read_predictions(request.predictions, decisions_only=True, known=known)
    marks = training_columns(request.predictions)
    if marks and not request.force:
        # oof.csv predicts the training posts: a zip of it is valid-looking and worthless.
        raise InputError(f"{request.predictions}: has {' and '.join(marks)} columns: these are predictions of "
                         "training posts (out-of-fold), not of the test file; submit the test predictions "
                         "(test.csv, or the --out of mmtune predict), or pass --force")
    if request.ids_from is not None:
        check_coverage(sub, request.ids_from, request.predictions, request.data)
    if request.fmt == "vimmsd":
        write_results_zip(sub, request.phase, request.out)
    else:
        write_kaggle_csv(sub, request.out)
    return sub
