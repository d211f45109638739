"""The Predictions type and its one CSV reader and writer: what is written reads back, decisions as written."""

import numpy as np
import pytest

from mmtune.errors import InputError
from mmtune.evaluation.predictions import Predictions, read_predictions, write_predictions


def test_an_oof_file_reads_back_with_gold_and_folds(tmp_path):
    path = tmp_path / "oof.csv"
    probs = np.array([[1.0, 3.0], [2.0, 2.0], [0.0, 5.0]])  # written renormalized
    write_predictions(path, Predictions(["a", "b", "c"], probs, ["x", "y"], gold=["y", "x", None], folds=[0, 1, 0]))
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[:2] == ["id,label,p_x,p_y,gold,fold", "a,y,0.250000,0.750000,y,0"]
    pred = read_predictions(path, need_gold=True)
    assert (pred.ids, pred.labels, pred.gold, pred.folds, pred.path) == (["a", "b", "c"], ["x", "y"], ["y", "x", ""],
                                                                          [0, 1, 0], path)
    np.testing.assert_allclose(pred.probs, probs / probs.sum(axis=1, keepdims=True))
    assert pred.predicted == ["y", "x", "y"] and pred.decided is None


def test_decisions_are_the_label_column_checked_against_the_known_labels(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("id,label,p_x,p_y\n1,y,0.9,0.1\n2,x,nan,0.5\n", encoding="utf-8")
    sub = read_predictions(path, decisions_only=True)  # the probabilities are not what a submission reads
    assert sub.probs is None and sub.predicted == ["y", "x"] and sub.labels == ["x", "y"]
    with pytest.raises(InputError, match=r"p\.csv:2: label 'y' is not a known label \(x, z\)"):
        read_predictions(path, decisions_only=True, known=["x", "z"])
    with pytest.raises(InputError, match=r"p\.csv:3: p_x must be a finite probability"):
        read_predictions(path)


def test_fitting_inputs_need_gold_and_two_probability_columns(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("id,label,p_x,p_y\n1,y,0.9,0.1\n", encoding="utf-8")
    with pytest.raises(InputError, match="no gold column"):
        read_predictions(path, need_gold=True)
    path.write_text("id,label\n1,y\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"at least two p_ columns"):
        read_predictions(path)
