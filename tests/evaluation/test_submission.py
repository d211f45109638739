"""`mmtune submit`: the ViMMSD results.zip format, validated ids and labels, Kaggle CSV."""

import csv
import json
import zipfile

import numpy as np

from mmtune.evaluation.predictions import Predictions, write_predictions
from tests.conftest import SARCASM
from tests.training.conftest import run_mmtune


def predictions(path, ids, labels=SARCASM, winners=None):
    probs = np.full((len(ids), len(labels)), 0.1)
    for row, k in enumerate(winners if winners is not None else [i % len(labels) for i in range(len(ids))]):
        probs[row, k] = 0.7
    write_predictions(path, Predictions(ids, probs, labels))
    return path


def test_results_zip_matches_the_vimmsd_format(tmp_path):
    ids = ["10", "2", "0", "7"]
    source = predictions(tmp_path / "p.csv", ids)
    data = tmp_path / "test.json"
    data.write_text(json.dumps({i: {"image": f"{i}.jpg", "caption": "x", "label": None} for i in ids}))
    result = run_mmtune("submit", source, "--phase", "dev", "--out", tmp_path / "results.zip", "--ids", data)
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(tmp_path / "results.zip") as archive:
        assert archive.namelist() == ["results.json"]
        body = json.loads(archive.read("results.json"))
    assert set(body) == {"results", "phase"} and body["phase"] == "dev"
    assert list(body["results"]) == ["0", "2", "7", "10"]  # numeric id order
    assert body["results"] == {"10": SARCASM[0], "2": SARCASM[1], "0": SARCASM[2], "7": SARCASM[3]}


def test_submission_faults_exit_2(tmp_path):
    duplicate = tmp_path / "dup.csv"
    duplicate.write_text("id,label,p_a,p_b\n1,not-sarcasm,0.5,0.5\n1,not-sarcasm,0.5,0.5\n")
    result = run_mmtune("submit", duplicate, "--out", tmp_path / "r.zip")
    assert result.returncode == 2 and "dup.csv:3: id '1' appears twice" in result.stderr
    two_class = predictions(tmp_path / "two.csv", ["1", "2"], labels=["not-sarcasm", "sarcasm"], winners=[0, 1])
    result = run_mmtune("submit", two_class, "--out", tmp_path / "r.zip")
    assert result.returncode == 2 and "label 'sarcasm' is not a known label" in result.stderr
    source = predictions(tmp_path / "p.csv", ["1", "2"])
    data = tmp_path / "test.json"
    data.write_text(json.dumps({i: {"image": "a.jpg", "caption": "x", "label": None} for i in ("1", "2", "3")}))
    result = run_mmtune("submit", source, "--out", tmp_path / "r.zip", "--ids", data)
    assert result.returncode == 2 and "1 posts of" in result.stderr and "id '3'" in result.stderr
    assert not (tmp_path / "r.zip").exists()


def test_kaggle_csv(tmp_path):
    source = predictions(tmp_path / "p.csv", ["b", "a"], labels=["x", "y"], winners=[1, 0])
    result = run_mmtune("submit", source, "--format", "csv", "--out", tmp_path / "sub.csv")
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "sub.csv", newline="") as handle:
        assert list(csv.reader(handle)) == [["id", "label"], ["a", "x"], ["b", "y"]]


def test_ids_are_read_with_the_configs_columns(tmp_path):
    source = predictions(tmp_path / "p.csv", ["1", "2"])
    data = tmp_path / "test.csv"
    data.write_text("post_id,caption,image\n1,x,a.jpg\n2,y,b.jpg\n", encoding="utf-8")
    result = run_mmtune("submit", source, "--out", tmp_path / "r.zip", "--ids", data, "data.columns.id=post_id")
    assert result.returncode == 0, result.stderr
    result = run_mmtune("submit", source, "--out", tmp_path / "r2.zip", "--ids", data)
    assert result.returncode == 2 and "test.csv" in result.stderr
