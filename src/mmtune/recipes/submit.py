"""`mmtune submit`: a prediction CSV -> the ViMMSD results.zip (or a Kaggle-style CSV)."""

from __future__ import annotations

from pathlib import Path

from mmtune.config import DataConfig
from mmtune.evaluation.predictions import Predictions
from mmtune.evaluation.submission import SubmitRequest, submit


def submit_file(predictions: Path, out: Path, phase: str = "test", fmt: str = "vimmsd", ids: Path | None = None,
                labels: list[str] | None = None, data: DataConfig | None = None) -> Predictions:
    """Validate and write; `ids`: the test data file (read with `data`), every post of which must be predicted."""
    return submit(SubmitRequest(predictions, out, phase=phase, fmt=fmt, ids_from=ids, labels=labels, data=data))
