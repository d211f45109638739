"""`mmtune predict CV_DIR FILE`: a cv folder's fold models on a new file (the private test), averaged exactly as
`mmtune cv` averaged them into its test.csv."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mmtune.ensemble.cv import mean_of_tests
from mmtune.evaluation.folders import cv_folds, fold_dir
from mmtune.evaluation.predictions import Predictions, as_written, write_predictions
from mmtune.recipes.cv import process_state
from mmtune.recipes.predict import predict


def predict_cv(cv_dir: Path, data: Path, images: Path | None = None, out: Path | None = None,
               tta_flip: bool = False, batch_size: int | None = None) -> Predictions:
    """The mean of the fold models that made the cv's oof.csv and test.csv; with `out`, also the CSV.

    Each fold's predictions are taken as its test_predictions.csv holds them (six decimals) before the mean, as
    `cv` took them: on the cv's own test file the result is its test.csv, to the last digit."""
    folds = [as_written(predict(fold_dir(cv_dir, k), data, images, tta_flip=tta_flip, batch_size=batch_size))
             for k in cv_folds(cv_dir)]
    mean = replace(mean_of_tests(folds, folds[0].labels), path=out or data)
    if out is not None and process_state().is_main_process:
        write_predictions(out, mean)
    return mean
