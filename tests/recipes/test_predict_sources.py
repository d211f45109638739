"""The private-test phase: `predict CV_DIR` is the cv's test.csv computed anew, `predict ENSEMBLE.json` is the
ensemble's test output computed anew (inputs re-run, the saved blend applied), for every kind of blend."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mmtune import api
from mmtune.ensemble.saved import read_saved_blend
from mmtune.errors import InputError
from mmtune.evaluation.predictions import as_written, read_predictions
from mmtune.recipes.ensemble import EnsembleRequest, run_ensemble
from mmtune.recipes.predict_ensemble import predict_ensemble, predict_source
from tests.hostile.conftest import assert_one_line_error, run_mmtune


def test_predict_cv_dir_is_the_cvs_test_csv_to_the_last_digit(two_cvs, tmp_path):
    out = tmp_path / "private.csv"
    result = run_mmtune("predict", two_cvs.a, two_cvs.test, "--images", two_cvs.test_images, "--out", out)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == (two_cvs.a / "test.csv").read_bytes()


def test_api_predict_takes_a_cv_folder_too(two_cvs):
    private = api.predict(two_cvs.b, two_cvs.test, images=two_cvs.test_images)
    assert np.array_equal(as_written(private).probs, read_predictions(two_cvs.b / "test.csv").probs)
    with pytest.raises(InputError, match="nope.json: data file not found"):
        api.predict(two_cvs.b, two_cvs.test.parent / "nope.json")


def test_predict_cv_dir_uses_the_folds_its_summary_names(two_cvs, tmp_path):
    # A cv folder copied without one of its fold runs cannot make its test.csv: named, not averaged over fewer.
    copy = tmp_path / "cv"
    shutil.copytree(two_cvs.a, copy, ignore=shutil.ignore_patterns("fold-2"))
    with pytest.raises(InputError, match="fold-2: not a run folder"):
        predict_source(copy, two_cvs.test, two_cvs.test_images)


RULES = "base: weighted\nrules:\n  - label: text-sarcasm\n    when: any\n    min_prob: 0.2\n"


@pytest.mark.parametrize(("method", "calibrate"), [
    ("mean", None), ("weighted", None), ("greedy", None), ("stack", None), ("rank", None), ("stack", "always"),
    ("rules", "auto"), ("auto", None), ("best", "auto"),
])
def test_predict_ensemble_json_is_the_ensembles_test_output(two_cvs, tmp_path, method, calibrate):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    out = tmp_path / "ens.csv"
    run_ensemble(EnsembleRequest([two_cvs.a, two_cvs.b], out, method=method, calibrate=calibrate,
                                 rules=rules if method == "rules" else None))
    again = tmp_path / "again.csv"
    predict_ensemble(tmp_path / "ens.json", two_cvs.test, two_cvs.test_images, again)
    assert again.read_bytes() == out.read_bytes()


def test_an_ensemble_of_run_folders_and_oof_files_is_predicted_again(two_cvs, tmp_path):
    # fold-0 of both cvs validated on the same posts (one folds.csv): two runs to blend. An oof.csv in a cv
    # folder stands for that folder.
    runs = [two_cvs.a / "fold-0", two_cvs.b / "fold-0"]
    out = tmp_path / "runs.csv"
    run_ensemble(EnsembleRequest(runs, out, method="weighted", calibrate="always"))
    saved = read_saved_blend(tmp_path / "runs.json")
    assert [(s.kind, s.path.resolve()) for s in saved.sources] == [("run", r.resolve()) for r in runs]
    again = tmp_path / "again.csv"
    result = run_mmtune("predict", tmp_path / "runs.json", two_cvs.test, "--images", two_cvs.test_images,
                        "--out", again)
    assert result.returncode == 0, result.stderr
    assert again.read_bytes() == out.read_bytes()
    oofs = [two_cvs.a / "oof.csv", two_cvs.b / "oof.csv"]
    run_ensemble(EnsembleRequest(oofs, tmp_path / "oofs.csv", tests=[two_cvs.a / "test.csv", two_cvs.b / "test.csv"]))
    assert [s.kind for s in read_saved_blend(tmp_path / "oofs.json").sources] == ["cv", "cv"]


def test_a_saved_ensemble_moves_with_its_folders(two_cvs, tmp_path):
    # Input paths are saved relative to the JSON: a folder of cvs and the JSON, copied elsewhere (a Kaggle
    # dataset), predicts from the copy.
    moved = tmp_path / "dataset"
    for cv in (two_cvs.a, two_cvs.b):
        shutil.copytree(cv, moved / cv.name)
    run_ensemble(EnsembleRequest([moved / "cv-a", moved / "cv-b"], moved / "ens.csv", method="stack"))
    shutil.move(moved, tmp_path / "elsewhere")
    blend = json.loads((tmp_path / "elsewhere" / "ens.json").read_text())["blend"]
    assert [i["path"] for i in blend["inputs"]] == ["cv-a", "cv-b"]
    again = predict_ensemble(tmp_path / "elsewhere" / "ens.json", two_cvs.test, two_cvs.test_images,
                             tmp_path / "again.csv")
    assert (tmp_path / "again.csv").read_bytes() == (tmp_path / "elsewhere" / "ens.csv").read_bytes()
    assert len(again.ids) == 24


def test_a_blend_of_prediction_files_is_refused_for_predict_in_one_line(two_cvs, tmp_path):
    files = []
    for cv in (two_cvs.a, two_cvs.b):
        files.append(tmp_path / f"{cv.name}-oof.csv")
        shutil.copy(cv / "oof.csv", files[-1])
    run_ensemble(EnsembleRequest(files, tmp_path / "ens.csv"))
    result = run_mmtune("predict", tmp_path / "ens.json", two_cvs.test, "--out", tmp_path / "p.csv")
    assert_one_line_error(result, "ens.json: input 1", "cv-a-oof.csv) was a prediction file", "no model")
    assert not (tmp_path / "p.csv").exists()
