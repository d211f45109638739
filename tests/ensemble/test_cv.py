"""`mmtune cv`: one shared split, OOF from the fold that did not see each post, skip and resume."""

import csv
import dataclasses
import json

import numpy as np
import pytest

from mmtune import api
from mmtune.config import load_config
from mmtune.data.folds import read_folds
from mmtune.errors import InputError
from mmtune.recipes.cv import fold_config, run_cv
from mmtune.recipes.train import train
from tests.training.conftest import fusion_config, write_config


def read_csv(path):
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def cv_config(demo, tiny_models, tmp_path, **train):
    config = fusion_config(demo, tiny_models, tmp_path / "cv", **({"epochs": 1} | train))
    config["cv"] = {"folds": 3}
    return load_config(write_config(config, tmp_path / "cv.yaml"))


@pytest.fixture(scope="module")
def finished_cv(demo_small, tiny_models, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cv")
    cfg = cv_config(demo_small, tiny_models, tmp)
    return cfg, run_cv(cfg)


def test_oof_covers_every_training_post_once_from_the_fold_that_did_not_see_it(finished_cv, demo_small):
    cfg, result = finished_cv
    cv_dir = result.cv_dir
    folds = read_folds(cv_dir / "folds.csv")
    train_ids = list(json.loads(demo_small.train.read_text(encoding="utf-8")))
    oof = read_csv(cv_dir / "oof.csv")
    assert sorted(row["id"] for row in oof) == sorted(train_ids) == sorted(folds)
    gold = {pid: post["label"] for pid, post in json.loads(demo_small.train.read_text(encoding="utf-8")).items()}
    for row in oof:
        assert int(row["fold"]) == folds[row["id"]]
        assert row["gold"] == gold[row["id"]]
    for k in range(3):
        fold_cfg = load_config(cv_dir / f"fold-{k}" / "config.yaml")
        # Every fold read the one shared split and held out its own fold.
        assert fold_cfg.train.val_fold == k and fold_cfg.cv.folds_file == str((cv_dir / "folds.csv").resolve())
        held_out = [row for row in oof if row["fold"] == str(k)]
        # The fold-k model, re-run on the training file, gives exactly the OOF rows of fold k.
        again = api.load_run(cv_dir / f"fold-{k}").predict_proba(cfg.data.train, cfg.data.train_images)
        index = {pid: i for i, pid in enumerate(again.ids)}
        labels = again.labels
        for row in held_out:
            np.testing.assert_allclose([float(row[f"p_{label}"]) for label in labels], again.probs[index[row["id"]]],
                                       atol=2e-6)
        # ...and it was not trained on them: they are exactly its validation posts.
        val_ids = {row["id"] for row in read_csv(cv_dir / f"fold-{k}" / "val_predictions.csv")}
        assert val_ids == {pid for pid, fold in folds.items() if fold == k}


def test_test_csv_is_the_mean_of_the_fold_models(finished_cv):
    _, result = finished_cv
    test = {row["id"]: row for row in read_csv(result.test)}
    folds = [{row["id"]: row for row in read_csv(result.cv_dir / f"fold-{k}" / "test_predictions.csv")}
             for k in range(3)]
    assert set(test) == set(folds[0]) and len(test) == 24
    label = "not-sarcasm"
    for pid, row in test.items():
        expected = np.mean([float(f[pid][f"p_{label}"]) for f in folds])
        assert abs(float(row[f"p_{label}"]) - expected) < 2e-6


def test_summary_has_the_spread_across_folds(finished_cv):
    _, result = finished_cv
    summary = json.loads((result.cv_dir / "cv_summary.json").read_text())
    per_fold = [summary["macro_f1"]["folds"][str(k)] for k in range(3)]
    assert summary["macro_f1"]["mean"] == pytest.approx(np.mean(per_fold))
    assert summary["macro_f1"]["std"] == pytest.approx(np.std(per_fold))
    assert set(summary["per_class_f1"]) == set(summary["labels"]) and summary["n_oof"] == 96


def test_finished_folds_are_skipped_and_an_interrupted_one_resumes(demo_small, tiny_models, tmp_path):
    cfg = cv_config(demo_small, tiny_models, tmp_path, epochs=2)
    cv_dir = tmp_path / "cv"
    first = run_cv(load_config(tmp_path / "cv.yaml", ["cv.only=[0]"]))
    assert first.trained == [0] and first.folds == [0]
    assert sorted({row["fold"] for row in read_csv(cv_dir / "oof.csv")}) == ["0"]
    # One fold per session: the OOF file gathers every fold done so far.
    second = run_cv(load_config(tmp_path / "cv.yaml", ["cv.only=[2]"]))
    assert second.trained == [2] and sorted({row["fold"] for row in read_csv(cv_dir / "oof.csv")}) == ["0", "2"]
    # Fold 1 stopped after its first epoch, as a killed session leaves it: last/ but no predictions.
    fold1 = fold_config(cfg, cv_dir, 1, (cv_dir / "folds.csv").resolve())
    train(load_config(tmp_path / "cv.yaml", ["train.epochs=1", f"output_dir={fold1.output_dir}",
                                            "train.val_fold=1", f"cv.folds_file={fold1.cv.folds_file}"]))
    for name in ("val_predictions.csv", "test_predictions.csv"):
        (cv_dir / "fold-1" / name).unlink()
    before = (cv_dir / "fold-1" / "metrics.jsonl").read_text().splitlines()
    result = run_cv(cfg)
    assert result.skipped == [0, 2] and result.trained == [1]
    after = (cv_dir / "fold-1" / "metrics.jsonl").read_text().splitlines()
    assert len(before) == 1 and len(after) == 2 and after[0] == before[0]  # continued, not restarted
    assert len(read_csv(cv_dir / "oof.csv")) == 96


def test_the_time_budget_is_shared_by_the_folds_and_the_cv_continues(demo_small, tiny_models, tmp_path):
    cfg = cv_config(demo_small, tiny_models, tmp_path, epochs=3, time_budget="0.001")
    stopped = run_cv(cfg)
    assert stopped.stopped == {0: "time_budget"} and not stopped.complete
    assert not (tmp_path / "cv" / "fold-1").exists() and not (tmp_path / "cv" / "oof.csv").exists()
    result = run_cv(load_config(tmp_path / "cv.yaml", ["train.time_budget=null"]))
    assert result.complete and result.trained == [0, 1, 2] and len(read_csv(result.oof)) == 96


def test_a_rerun_with_another_config_or_split_is_refused(finished_cv, tmp_path):
    cfg, result = finished_cv
    changed = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=cfg.train.lr * 2))
    with pytest.raises(InputError, match=r"train\.lr"):
        run_cv(changed)
    with pytest.raises(InputError, match=r"cv\.folds: .* holds 3 folds, not 5"):
        run_cv(dataclasses.replace(cfg, cv=dataclasses.replace(cfg.cv, folds=5)))
    with pytest.raises(InputError, match=r"data\.val"):
        run_cv(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, val=str(tmp_path / "val.json"))))
