"""cv.refit: after the folds, one run on every training post for the folds' median best epoch."""

import json
import statistics

import numpy as np
import pytest

from mmtune.config import load_config
from mmtune.errors import InputError
from mmtune.evaluation.predictions import read_predictions
from mmtune.recipes.cv import best_epoch, run_cv
from tests.training.conftest import fusion_config, write_config


@pytest.fixture(scope="module")
def refit_cv(demo_small, tiny_models, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("refit")
    config = fusion_config(demo_small, tiny_models, tmp / "cv", epochs=3)
    config["cv"] = {"folds": 3, "refit": True}
    cfg = load_config(write_config(config, tmp / "cv.yaml"))
    return cfg, run_cv(cfg)


def test_refit_trains_every_post_for_the_median_best_epoch(refit_cv, demo_small):
    cfg, result = refit_cv
    cv_dir = result.cv_dir
    bests = [best_epoch(cv_dir / f"fold-{k}", "macro_f1") for k in range(3)]
    assert result.refit_epochs == round(statistics.median(bests))
    refit = load_config(cv_dir / "refit" / "config.yaml")
    assert refit.train.full_fit and refit.train.epochs == result.refit_epochs and not refit.cv.refit
    records = [json.loads(line) for line in (cv_dir / "refit" / "metrics.jsonl").read_text().splitlines()]
    n_train = len(json.loads(demo_small.train.read_text(encoding="utf-8")))
    assert records[-1]["step"] == result.refit_epochs * -(-n_train // 8)  # all posts, batch 8


def test_test_with_refit_is_the_mean_of_the_fold_models_and_the_refit_model(refit_cv):
    _, result = refit_cv
    cv_dir = result.cv_dir
    members = [read_predictions(cv_dir / f"fold-{k}" / "test_predictions.csv") for k in range(3)]
    members.append(read_predictions(cv_dir / "refit" / "test_predictions.csv"))
    combined = read_predictions(result.refit_test)
    assert result.refit_test == cv_dir / "test_with_refit.csv"
    index = {pid: i for i, pid in enumerate(combined.ids)}
    for pid in members[0].ids:
        expected = np.mean([m.probs[m.ids.index(pid)] for m in members], axis=0)
        np.testing.assert_allclose(combined.probs[index[pid]], expected, atol=2e-6)
    # test.csv stays the fold models' mean alone.
    folds_only = read_predictions(cv_dir / "test.csv")
    np.testing.assert_allclose(folds_only.probs[0], np.mean([m.probs[m.ids.index(folds_only.ids[0])]
                                                             for m in members[:3]], axis=0), atol=2e-6)


def test_a_rerun_skips_the_done_refit(refit_cv):
    cfg, result = refit_cv
    before = (result.cv_dir / "refit" / "test_predictions.csv").stat().st_mtime_ns
    again = run_cv(cfg)
    assert again.skipped == [0, 1, 2] and again.refit_epochs == result.refit_epochs
    assert (result.cv_dir / "refit" / "test_predictions.csv").stat().st_mtime_ns == before


def test_best_epoch_reads_the_first_epoch_that_reached_the_best(tmp_path):
    lines = [{"kind": "epoch", "epoch": 1, "step": 4, "macro_f1": 0.5, "best": 0.5},
             {"kind": "epoch", "epoch": 2, "step": 8, "macro_f1": 0.7, "best": 0.7},
             {"kind": "epoch", "epoch": 3, "step": 12, "macro_f1": 0.7, "best": 0.7},
             {"kind": "epoch", "epoch": 4, "step": 16, "macro_f1": 0.6, "best": 0.7}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert best_epoch(tmp_path, "macro_f1") == 2
    (tmp_path / "metrics.jsonl").write_text("{not json\n")
    with pytest.raises(InputError, match="metrics.jsonl: missing or damaged"):
        best_epoch(tmp_path, "macro_f1")
