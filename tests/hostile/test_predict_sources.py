"""`mmtune predict SOURCE`: a source that is no run folder, no finished cv folder and no ensemble .json is one
exit-2 line naming it, before any model is loaded."""

from __future__ import annotations

import json

import pytest

from tests.hostile.conftest import assert_one_line_error, run_mmtune


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "private.json"
    path.write_text(json.dumps({"1": {"image": "1.jpg", "caption": "x", "label": None}}))
    return path


def test_a_file_that_is_no_ensemble_json(tmp_path, data):
    predictions = tmp_path / "ens.csv"
    predictions.write_text("id,label,p_a,p_b\n1,a,0.5,0.5\n")
    assert_one_line_error(run_mmtune("predict", predictions, data, "--out", tmp_path / "p.csv"),
                          "ens.csv: not a run folder", "the .json that mmtune ensemble wrote")


def test_a_cv_folder_before_its_first_finished_fold(tmp_path, data):
    cv = tmp_path / "cv"
    cv.mkdir()
    (cv / "oof.csv").write_text("id,label,p_a,p_b,gold,fold\n")
    assert_one_line_error(run_mmtune("predict", cv, data, "--out", tmp_path / "p.csv"),
                          "cv: no cv_summary.json", "has not finished a fold")


def test_a_cv_summary_that_is_no_summary(tmp_path, data):
    cv = tmp_path / "cv"
    cv.mkdir()
    (cv / "cv_summary.json").write_text(json.dumps({"folds": ["../../etc"], "macro_f1": {}}))
    assert_one_line_error(run_mmtune("predict", cv, data, "--out", tmp_path / "p.csv"),
                          "cv_summary.json: not a summary written by mmtune cv")


def test_a_cv_folder_missing_a_fold_run(tmp_path, data):
    cv = tmp_path / "cv"
    cv.mkdir()
    summary = {"folds": [0, 1], "macro_f1": {"mean": 0.5, "std": 0.0, "folds": {"0": 0.5, "1": 0.5}},
               "per_class_f1": {}}
    (cv / "cv_summary.json").write_text(json.dumps(summary))
    (cv / "fold-0").mkdir()
    result = run_mmtune("predict", cv, data, "--out", tmp_path / "p.csv")
    assert_one_line_error(result, "fold-0: not a run folder (no config.yaml)")
