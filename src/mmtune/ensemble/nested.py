"""Out-of-sample scores of anything fitted on the OOF rows' gold labels: nested cross-validation.

A blend, calibration or method choice fitted on the OOF rows and scored on those same rows is scored in-sample:
it has seen the answers. Here each OOF fold is predicted by one fitted on the other folds (the OOF file's `fold`
column, the folds its members were validated on; a stratified k-fold when there is none), so every figure the
ensemble reports is out-of-sample: the one meaning "out-of-sample" has throughout mmtune ensemble.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mmtune.evaluation.calibration import row_splits

K_FOLDS = 5

# (fit rows, held-out rows) -> [len(held-out rows), K] predictions of a model fitted on the fit rows only
FitPredict = Callable[[np.ndarray, np.ndarray], np.ndarray]


def cross_fitted(fit_predict: FitPredict, targets: np.ndarray, groups: np.ndarray | None, seed: int,
                 classes: int) -> np.ndarray:
    """[N, classes] predictions of every row by a model fitted without that row's fold."""
    out = np.zeros((len(targets), classes))
    for fit_rows, held_rows in row_splits(targets, K_FOLDS, seed, groups):
        out[held_rows] = fit_predict(fit_rows, held_rows)
    return out


def describe_splits(targets: np.ndarray, groups: np.ndarray | None) -> str:
    """How `row_splits` splits these rows, in words for the summary."""
    if groups is not None and len(np.unique(groups)) >= 2:
        return f"nested CV over the OOF file's {len(np.unique(groups))} folds"
    return f"nested CV over a stratified {max(2, min(K_FOLDS, len(targets)))}-fold split (the OOF rows have no fold)"
