"""The demo's workflow (cv + calibrated ensemble + report + results.zip) on tiny models."""

import zipfile

from mmtune.cli.tables import workflow_table
from mmtune.config import load_config
from mmtune.recipes.demo import cv_workflow
from tests.training.conftest import fusion_config, write_config


def test_demo_workflow_scores_the_ensemble_against_the_best_fold(demo_small, tiny_models, tmp_path):
    config = write_config(fusion_config(demo_small, tiny_models, tmp_path / "run", epochs=1), tmp_path / "c.yaml")
    figures = cv_workflow(load_config(config), demo_small.test_gold, tmp_path / "cv", folds=3)
    summary = figures["cv_summary"]
    assert figures["best_fold"] == max(range(3), key=lambda k: summary["macro_f1"]["folds"][str(k)])
    for key in ("best_fold_test", "mean_test", "calibrated_test"):
        assert figures[key]["n"] == 24 and 0 <= figures[key]["macro_f1"] <= 1
    in_sample = figures["calibration"]["in_sample"]
    assert in_sample["macro_f1_after"] >= in_sample["macro_f1_before"]
    assert figures["report"].stat().st_size > 10_000
    with zipfile.ZipFile(figures["submission"]) as archive:
        assert archive.namelist() == ["results.json"]
    assert workflow_table(figures).row_count == 3
