"""`mmtune submit`: a prediction CSV -> the ViMMSD results.zip (or a Kaggle-style CSV)."""

from __future__ import annotations

from pathlib import Path

from mmtune.config import DataConfig
from mmtune.export import Submission, SubmitRequest, submit


def submit_file(predictions: Path, out: Path, phase: str = "test", fmt: str = "vimmsd", ids: Path | None = None,
                labels: list[str] | None = None, data: DataConfig | None = None) -> Submission:
    """Validate and write; `ids`: the test data file (read with `data`), every post of which must be predicted."""
    return submit(SubmitRequest(predictions, out, phase=phase, fmt=fmt, ids_from=ids, labels=labels, data=data))
