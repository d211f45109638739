"""`mmtune predict ENSEMBLE.json FILE`: every run or cv folder of a saved ensemble predicts the new file, then the
ensemble's fitted blend, calibration and rules combine them (ensemble/saved.py), as they combined the test files.

Also the one entry for `mmtune predict SOURCE`, whichever of a run folder, a cv folder or an ensemble SOURCE is.
"""

from __future__ import annotations

from pathlib import Path

from mmtune.ensemble.inputs import align
from mmtune.ensemble.saved import Source, model_sources, read_saved_blend
from mmtune.evaluation.predictions import Predictions, as_written, write_predictions
from mmtune.recipes.cv import process_state
from mmtune.recipes.predict import predict
from mmtune.recipes.predict_cv import predict_cv
from mmtune.recipes.preflight import predict_kind


def predict_source(source: Path, data: Path, images: Path | None = None, out: Path | None = None,
                   tta_flip: bool = False, batch_size: int | None = None) -> Predictions:
    """Predict `data` with a run folder, a cv folder (its folds' mean) or a saved ensemble. `batch_size`: posts
    per forward pass of a run or of each fold (default: twice the run's train.batch_size)."""
    kind = predict_kind(source)
    if kind == "ensemble":
        return predict_ensemble(source, data, images, out, tta_flip=tta_flip)
    if kind == "cv":
        return predict_cv(source, data, images, out, tta_flip=tta_flip, batch_size=batch_size)
    return predict(source, data, images, out, tta_flip=tta_flip, batch_size=batch_size)


def predict_ensemble(path: Path, data: Path, images: Path | None = None, out: Path | None = None,
                     tta_flip: bool = False) -> Predictions:
    """The saved blend applied to the inputs' predictions of `data`; with `out`, also the CSV."""
    saved = read_saved_blend(path)
    members = [_member(source, data, images, tta_flip) for source in model_sources(saved)]
    aligned = align(members, saved.label_map, labels=saved.labels, priors=saved.priors)
    result = Predictions(aligned.ids, saved.fitted.apply(aligned), saved.labels, path=out or data)
    if out is not None and process_state().is_main_process:
        write_predictions(out, result)
    return result


def _member(source: Source, data: Path, images: Path | None, tta_flip: bool) -> Predictions:
    """One input's predictions as the ensemble read them from its test file (written with six decimals)."""
    if source.kind == "cv":
        return as_written(predict_cv(source.path, data, images, tta_flip=tta_flip))
    return as_written(predict(source.path, data, images, tta_flip=tta_flip))
