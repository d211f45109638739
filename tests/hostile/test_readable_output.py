"""What a person reads after `train` and `predict` in a log file (Kaggle's "Save & Run", CI: not a terminal):
timestamped lines, progress records instead of carriage-return bars, the scores and the files at the end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sklearn.metrics import f1_score

from mmtune.cli.commands import _print_resume_hint
from mmtune.config import DataConfig, load_config
from mmtune.data.checks import load_posts
from mmtune.evaluation.predictions import read_predictions
from mmtune.training.resume import config_hash
from tests.hostile.conftest import fusion_config, run_mmtune, write_config

STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (INFO|WARNING) ")


@pytest.fixture(scope="module")
def trained(demo_small, tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("readable")
    config = write_config(fusion_config(demo_small, tiny_models, root / "run", epochs=2, batch_size=8),
                          root / "c.yaml")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MMTUNE_PROGRESS_SECONDS", "0")  # a record per batch: the interval is not what is tested
        result = run_mmtune("train", config)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "run", result


def test_a_log_file_gets_timestamped_lines_and_progress_records_not_bars(trained):
    _, result = trained
    assert "\r" not in result.stderr and "\x1b" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and all(STAMP.match(line) for line in lines), lines
    assert any(re.search(r"INFO epoch 1: \d+/9 batch \(\d+%\), [\d.]+ batch/s(, ETA \d:\d\d:\d\d)?$", line)
               for line in lines), lines
    assert any(re.search(r"INFO epoch 2: 9/9 batch \(100%\), [\d.]+ batch/s, \d:\d\d:\d\d in all$", line)
               for line in lines), lines


def test_train_ends_with_the_best_step_its_scores_and_the_files(trained):
    run_dir, result = trained
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    best = max(records, key=lambda r: (r["macro_f1"], -r["step"]))  # ties keep the earlier checkpoint
    out = result.stdout
    assert f"best evaluation: step {best['step']}, 24 validation posts" in out
    assert re.search(rf"macro-F1 \(selection\) +{best['macro_f1']:.4f}", out), out
    for label, f1 in best["per_class_f1"].items():
        assert re.search(rf"F1 {label} +{f1:.4f}", out), out
    written = re.search(r"files written in (\S+): (.+)", out)
    assert written and Path(written[1]) == run_dir
    assert written[2].split(", ")[:4] == ["best", "last", "metrics.jsonl", "val_predictions.csv"]
    assert "test_predictions.csv" in written[2] and "learning_curve.png" in written[2]
    assert out.strip().splitlines()[-1] == f"done (finished): {run_dir}"


def test_predict_on_a_labelled_file_prints_its_scores(trained, demo_small, tmp_path):
    run_dir, _ = trained
    out = tmp_path / "p.csv"
    result = run_mmtune("predict", run_dir, demo_small.train, "--images", demo_small.train_images, "--out", out,
                        "--batch-size", "7")
    assert result.returncode == 0, result.stderr[-3000:]
    predictions = read_predictions(out)
    assert predictions.gold is None  # the CSV stays what a submission reads
    posts = {p.id: p.label for p in load_posts(demo_small.train, demo_small.train_images, DataConfig()).posts}
    gold = [posts[i] for i in predictions.ids]
    per_class = f1_score(gold, predictions.predicted, labels=predictions.labels, average=None, zero_division=0)
    assert f"scores on {demo_small.train.name} (96 labelled posts)" in result.stdout
    assert re.search(rf"macro-F1 \(selection\) +{per_class.mean():.4f}", result.stdout), result.stdout
    for label, f1 in zip(predictions.labels, per_class):
        assert re.search(rf"F1 {label} +{f1:.4f}", result.stdout), result.stdout

    unlabelled = run_mmtune("predict", run_dir, demo_small.test, "--images", demo_small.test_images, "--out",
                            tmp_path / "q.csv")
    assert unlabelled.returncode == 0 and "scores on" not in unlabelled.stdout, unlabelled.stderr[-3000:]


def test_predict_batch_size_must_be_a_positive_whole_number(trained, demo_small, tmp_path):
    run_dir, _ = trained
    result = run_mmtune("predict", run_dir, demo_small.test, "--out", tmp_path / "q.csv", "--batch-size", "0")
    assert result.returncode == 2 and "--batch-size: must be >= 1, got 0" in result.stderr


def test_a_time_budget_stop_says_how_to_give_a_new_budget(tmp_path, capsys, demo_small, tiny_models):
    config = write_config(fusion_config(demo_small, tiny_models, tmp_path / "run", time_budget="40s"),
                          tmp_path / "c.yaml")
    overrides = ["train.time_budget=40s", "seed=4"]
    cfg = load_config(config, overrides)
    _print_resume_hint(["train", str(config), "--resume"], overrides, "time_budget", cfg)
    lines = [" ".join(line.split()) for line in capsys.readouterr().out.strip().splitlines()]
    assert lines[0] == f"stopped (time_budget); continue with: mmtune train {config} --resume {' '.join(overrides)}"
    new = re.search(r"for another budget: mmtune train (\S+) --resume (.+) \(any duration", lines[1])
    assert "40s again" in lines[1] and new, lines
    given = new[2].split()
    assert given == ["seed=4", "train.time_budget=2h"]
    # What the hint gives may change on --resume: the run's config hash ignores it.
    assert config_hash(load_config(config, given)) == config_hash(cfg)
    assert load_config(config, given).train.time_budget == "2h"


@pytest.mark.parametrize("verb", ["predict", "submit"])
def test_every_argument_of_predict_and_submit_has_help(verb):
    from mmtune.cli.parser import build_parser

    commands = next(a for a in build_parser()._actions if a.dest == "command")
    actions = [a for a in commands.choices[verb]._actions if a.dest != "help"]
    assert actions and [a.dest for a in actions if not a.help] == []


def test_library_bars_stay_out_of_a_log_file(tmp_path):
    # transformers draws "Writing model shards" when a model is saved: a carriage-return bar in a log file.
    result = run_mmtune("make-tiny", "bert", tmp_path / "bert")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "\r" not in result.stderr and "shards" not in result.stderr, result.stderr
