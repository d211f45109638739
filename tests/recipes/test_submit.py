"""`mmtune submit` in the private-test phase: training predictions are refused unless forced, and the predicted
label distribution is printed beside the training one."""

from __future__ import annotations

import argparse
import shutil
import zipfile
from collections import Counter

from mmtune.cli.parser import build_parser
from mmtune.evaluation.predictions import read_predictions
from mmtune.recipes.ensemble import EnsembleRequest, run_ensemble
from tests.hostile.conftest import assert_one_line_error, run_mmtune


def test_oof_predictions_are_refused_unless_forced(two_cvs, tmp_path):
    result = run_mmtune("submit", two_cvs.a / "oof.csv", "--out", tmp_path / "r.zip")
    assert_one_line_error(result, "oof.csv: has gold and fold columns", "training posts", "--force")
    assert not (tmp_path / "r.zip").exists()
    forced = run_mmtune("submit", two_cvs.a / "oof.csv", "--out", tmp_path / "r.zip", "--force")
    assert forced.returncode == 0, forced.stderr
    assert zipfile.ZipFile(tmp_path / "r.zip").namelist() == ["results.json"]


def rows(output, label):
    """The distribution table's cells on `label`'s row."""
    line = next(line for line in output.splitlines() if f" {label} " in line)
    return [cell.strip() for cell in line.strip("│┃ ").split("│") if cell.strip()]


def share(counts, label):
    return f"{counts[label]} ({100 * counts[label] / sum(counts.values()):.1f}%)"


def test_the_distribution_beside_the_cv_folders_training_labels(two_cvs, tmp_path):
    result = run_mmtune("submit", two_cvs.a / "test.csv", "--out", tmp_path / "r.zip", "--ids", two_cvs.test)
    assert result.returncode == 0, result.stderr
    predicted = Counter(read_predictions(two_cvs.a / "test.csv").predicted)
    training = Counter(read_predictions(two_cvs.a / "oof.csv").gold)
    assert "predicted label distribution vs training" in result.stdout
    for label in ("multi-sarcasm", "not-sarcasm"):
        assert rows(result.stdout, label) == [label, share(predicted, label), share(training, label)]
    assert f"gold of {two_cvs.a / 'oof.csv'}" in " ".join(result.stdout.split())


def test_the_training_labels_of_an_ensemble_json_given_or_beside(two_cvs, tmp_path):
    run_ensemble(EnsembleRequest([two_cvs.a, two_cvs.b], tmp_path / "ens.csv", method="mean"))
    training = Counter(read_predictions(two_cvs.a / "oof.csv").gold)
    elsewhere = tmp_path / "private.csv"
    shutil.copy(tmp_path / "ens.csv", elsewhere)
    alone = run_mmtune("submit", elsewhere, "--out", tmp_path / "a.zip")
    assert alone.returncode == 0 and "vs training" not in alone.stdout
    assert len(rows(alone.stdout, "not-sarcasm")) == 2  # the predicted share only
    for args in ([tmp_path / "ens.csv"], [elsewhere, "--source", tmp_path / "ens.json"]):
        result = run_mmtune("submit", *args, "--out", tmp_path / "r.zip")
        assert result.returncode == 0, result.stderr
        assert rows(result.stdout, "not-sarcasm")[2] == share(training, "not-sarcasm")


def test_a_bad_source_is_named_before_anything_is_written(two_cvs, tmp_path):
    out = tmp_path / "r.zip"
    result = run_mmtune("submit", two_cvs.a / "test.csv", "--out", out, "--source", tmp_path / "nothing")
    assert_one_line_error(result, "nothing: not a run folder")
    assert not out.exists()


def test_every_predict_and_submit_argument_has_help():
    verbs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    for verb in ("predict", "submit"):
        arguments = verbs[verb]._actions
        assert len(arguments) > 5
        missing = [a.dest for a in arguments if not (a.help or "").strip()]
        assert not missing, f"{verb}: no help for {missing}"
