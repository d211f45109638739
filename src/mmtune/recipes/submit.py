"""`mmtune submit`: a prediction CSV -> the ViMMSD results.zip (or a Kaggle-style CSV), and the labels the model
trained on, for the sanity check of the predicted label distribution next to the training one."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mmtune.config import DataConfig
from mmtune.errors import InputError
from mmtune.evaluation.folders import OOF_FILE, VAL_PREDICTIONS, folder_kind
from mmtune.evaluation.predictions import Predictions, read_predictions
from mmtune.evaluation.submission import SubmitRequest, submit
from mmtune.recipes.preflight import predict_kind


def submit_file(predictions: Path, out: Path, phase: str = "test", fmt: str = "vimmsd", ids: Path | None = None,
                labels: list[str] | None = None, data: DataConfig | None = None, force: bool = False) -> Predictions:
    """Validate and write; `ids`: the test data file (read with `data`), every post of which must be predicted;
    `force`: submit training predictions (a file with gold/fold columns) all the same."""
    return submit(SubmitRequest(predictions, out, phase=phase, fmt=fmt, ids_from=ids, labels=labels, data=data,
                                force=force))


@dataclass
class TrainingLabels:
    counts: Counter[str]
    what: str  # where they were read, in words


def training_labels(predictions: Path, source: Path | None = None) -> TrainingLabels | None:
    """The gold labels behind the model that made `predictions`: of `source` (a run folder's validation posts,
    a cv folder's OOF posts, an ensemble .json's OOF counts), by default of the run or cv folder the predictions
    file is in, or of the ensemble .json written beside it; None when none is known."""
    if source is None:
        return _beside(predictions)
    kind = predict_kind(source)
    if kind == "ensemble":
        return _ensemble_labels(source)
    path = _gold_file(source, kind)
    if not path.is_file():
        raise InputError(f"--source {source}: no {path.name} yet (the {kind} has no finished predictions)")
    return _folder_labels(path)


def _gold_file(folder: Path, kind: str) -> Path:
    return folder / (OOF_FILE if kind == "cv" else VAL_PREDICTIONS)


def _folder_labels(path: Path) -> TrainingLabels:
    gold = read_predictions(path, need_gold=True).gold or []
    return TrainingLabels(Counter(g for g in gold if g), f"gold of {path}")


def _ensemble_labels(path: Path) -> TrainingLabels | None:
    from mmtune.ensemble.saved import read_saved_blend  # scikit-learn: only for an ensemble

    counts = read_saved_blend(path).train_labels
    return TrainingLabels(Counter(counts), f"OOF gold of {path}") if counts is not None else None


def _beside(predictions: Path) -> TrainingLabels | None:
    """The labels of the run or cv folder holding the predictions file, or of the ensemble .json next to its CSV
    (`ens.csv` -> `ens.json`, as mmtune ensemble writes them)."""
    if (kind := folder_kind(predictions.parent)) is not None:
        path = _gold_file(predictions.parent, kind)
        return _folder_labels(path) if path.is_file() else None
    summary = predictions.with_suffix(".json")
    if not summary.is_file() or summary == predictions:
        return None
    try:
        return _ensemble_labels(summary)
    except InputError:  # a guess, not the user's --source: a .json of something else beside the file is no error
        return None
