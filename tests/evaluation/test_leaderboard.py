"""`mmtune runs`: the leaderboard of run folders, cv folders and ensembles, read strictly and scored alike."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from mmtune.errors import InputError
from mmtune.evaluation.folders import SUMMARY_FILE
from mmtune.evaluation.metrics import evaluate_probs
from mmtune.evaluation.predictions import read_predictions
from mmtune.recipes.runs import read_board
from tests.evaluation.run_folders import make_board, make_run, write_data
from tests.hostile.conftest import assert_one_line_error, run_mmtune


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    return make_board(tmp_path_factory.mktemp("board"))


def _names(entries) -> list[str]:
    return [entry.name for entry in entries]


def test_every_run_cv_folder_and_ensemble_is_listed_best_first(board):
    read = read_board([board.root / "runs"])
    assert sorted((e.name, e.kind) for e in read.entries) == [
        ("runs/blend", "ensemble"), ("runs/cv-a", "cv"), ("runs/cv-b", "cv"), ("runs/lr-big", "run"),
        ("runs/lr-small", "run")]
    scores = [e.macro_f1 for e in read.entries]
    assert scores == sorted(scores, reverse=True) and read.entries[0].name == "runs/cv-b"
    assert read.keys == ["seed", "train.lr"]  # name, output_dir and the folds' val_fold differ too: not shown
    assert read.skipped == []


def test_a_cv_folders_figures_agree_with_its_cv_summary(board):
    cv = next(e for e in read_board([board.runs["cv-b"]]).entries)
    summary = json.loads((board.runs["cv-b"] / SUMMARY_FILE).read_text(encoding="utf-8"))
    assert cv.macro_f1 == pytest.approx(summary["oof"]["macro_f1"])
    assert cv.macro_f1_std == pytest.approx(summary["macro_f1"]["std"])
    assert list(cv.fold_f1.values()) == pytest.approx(list(summary["macro_f1"]["folds"].values()))
    assert cv.per_class_f1 == pytest.approx({k: v["f1"] for k, v in summary["oof"]["per_class"].items()})
    assert cv.model.startswith("fusion pair") and cv.wall_s == 230.0  # three folds of 10..30 s on one clock


def test_test_macro_f1_only_with_gold(board):
    without = {e.name: e.test_macro_f1 for e in read_board([board.root / "runs"]).entries}
    assert set(without.values()) == {None}
    scored = {e.name: e for e in read_board([board.root / "runs"], gold=board.data.gold_file).entries}
    test = read_predictions(board.runs["lr-big"] / "test_predictions.csv")
    index = {label: k for k, label in enumerate(test.labels)}
    expected = evaluate_probs(test.probs, np.array([index[g] for g in board.data.test_gold]), test.labels)
    assert scored["runs/lr-big"].test_macro_f1 == pytest.approx(expected["macro_f1"])
    assert scored["runs/cv-b"].test_macro_f1 > scored["runs/lr-small"].test_macro_f1


def test_sort_by_a_column(board):
    def order(column: str) -> list[str]:
        return _names(read_board([board.root / "runs"], sort=column).entries)

    assert order("name") == ["runs/blend", "runs/cv-a", "runs/cv-b", "runs/lr-big", "runs/lr-small"]
    by_lr = order("train.lr")  # low first; the ensemble has no train.lr: last
    assert by_lr[0] == "runs/lr-small" and by_lr[3:] == ["runs/cv-b", "runs/blend"]
    by_wall = order("wall_s")  # short first: the runs (30 s), the cvs (230 s), the ensemble (unknown) last
    assert set(by_wall[:2]) == {"runs/lr-big", "runs/lr-small"} and by_wall[2:4] != [] and by_wall[-1] == "runs/blend"
    assert order("f1:image-sarcasm")[0] == "runs/cv-b"


def test_an_unknown_sort_column_names_the_columns(board):
    with pytest.raises(InputError, match=r"--sort: unknown column 'lr'; one of name, kind, .*train\.lr.*f1:not-s"):
        read_board([board.root / "runs"], sort="lr")


def test_the_cli_prints_json_and_csv(board):
    result = run_mmtune("runs", board.root / "runs", "--json", "--gold", board.data.gold_file)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [row["name"] for row in data["runs"]][0] == "runs/cv-b"
    assert data["keys"] == ["seed", "train.lr"] and data["runs"][0]["settings"] == {"seed": "2", "train.lr": "0.003"}
    assert data["runs"][0]["test_macro_f1"] > 0.8 and data["skipped"] == []
    result = run_mmtune("runs", board.root / "runs", "--csv", "--sort", "name")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [row["name"] for row in rows] == sorted(row["name"] for row in rows)
    assert rows[0]["kind"] == "ensemble" and rows[0]["train.lr"] == "" and float(rows[0]["macro_f1"]) > 0


def test_the_table_shows_every_run(board, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    result = run_mmtune("runs", board.root / "runs")
    assert result.returncode == 0, result.stderr
    for name in ("runs/cv-a", "runs/cv-b", "runs/lr-big", "runs/lr-small", "runs/blend", "train.lr", "F1 text-sarc"):
        assert name in result.stdout


HOSTILE = "=HYPERLINK(\"x\")[bold]<b>"


def test_names_are_data_in_the_table_and_the_csv(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    data = write_data(tmp_path / "data", labels=["[/]", "=1+1", "<i>"])
    make_run(tmp_path / "runs" / HOSTILE, data, "r", ["train.lr=0.01"], right=0.8, labels=["[/]", "=1+1", "<i>"])
    make_run(tmp_path / "runs" / "plain", data, "r", [], right=0.5, labels=["[/]", "=1+1", "<i>"])
    result = run_mmtune("runs", tmp_path / "runs")
    assert result.returncode == 0, result.stderr
    assert f"runs/{HOSTILE}" in result.stdout and "F1 [/]" in result.stdout and "\x1b" not in result.stdout
    rows = list(csv.reader(io.StringIO(run_mmtune("runs", tmp_path / "runs", "--csv").stdout)))
    assert "f1:=1+1" in rows[0]
    names = [row[0] for row in rows[1:]]
    assert f"runs/{HOSTILE}" in names  # a name that starts with "runs/" is no formula ...
    lone = read_board([tmp_path / "runs" / HOSTILE]).csv()
    assert list(csv.reader(io.StringIO(lone)))[1][0] == "'" + HOSTILE  # ... one that starts with "=" is quoted


def test_damaged_folders_are_skipped_each_named_and_counted(board, tmp_path):
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(board.root / "runs", runs)
    (runs / "lr-small" / "config.yaml").write_text("train: {lr: [", encoding="utf-8")
    (runs / "cv-a" / SUMMARY_FILE).write_text('{"folds": [0, 1', encoding="utf-8")
    (runs / "blend.json").write_text('{"method": "mean", "blend": {', encoding="utf-8")
    (runs / "lr-big" / "val_predictions.csv").write_text("id,label,p_a,p_b,gold\nx,a,nan,1,a\n", encoding="utf-8")
    result = run_mmtune("runs", runs)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "runs/cv-b" in result.stdout
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 4 and "4 folder(s) skipped" in result.stderr
    for path in (runs / "lr-small", runs / "cv-a", runs / "blend.json", runs / "lr-big"):
        assert any(line.startswith(f"skipped {path}: ") for line in skipped), path
    assert any(f"{runs / 'cv-a' / SUMMARY_FILE}: invalid JSON" in line for line in skipped)


def test_nothing_readable_is_one_line_exit_2(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run_mmtune("runs", tmp_path / "empty"), "no run, cv folder, ensemble or export folder")
    assert_one_line_error(run_mmtune("runs", tmp_path / "gone"), "gone", "not found")


def test_an_export_folder_is_listed_with_its_model(board, tmp_path):
    from mmtune.serving.bundle import write_manifest

    (tmp_path / "export").mkdir()
    write_manifest(tmp_path / "export", {"kind": "fusion", "labels": ["a", "b"], "members": ["fold-0", "fold-1"]})
    read = read_board([tmp_path / "export", board.runs["lr-big"]])
    export = next(e for e in read.entries if e.kind == "export")
    assert export.model == "fusion export of 2 model(s)" and export.macro_f1 is None
    assert read.entries[-1] is export  # no score: listed last


def test_linked_folders_are_read_once_and_a_loop_of_links_ends(board, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "best").symlink_to(board.runs["cv-b"], target_is_directory=True)
    (tmp_path / "mine" / "again").symlink_to(board.runs["cv-b"], target_is_directory=True)
    (tmp_path / "mine" / "loop").symlink_to(tmp_path / "mine", target_is_directory=True)
    read = read_board([tmp_path / "mine"])
    assert [(e.name, e.kind) for e in read.entries] == [("mine/again", "cv")] and read.skipped == []


def test_an_ensemble_scored_on_the_rows_it_was_fitted_on_says_so(board, tmp_path):
    from tests.evaluation.run_folders import make_ensemble

    summary = json.loads(make_ensemble([board.runs["cv-a"], board.runs["cv-b"]], tmp_path / "ens.csv").read_text())
    summary["ensemble_oof_is_in_sample"] = True  # what mmtune ensemble wrote before its figures were nested
    (tmp_path / "ens.json").write_text(json.dumps(summary), encoding="utf-8")
    entry = read_board([tmp_path]).entries[0]
    assert entry.model == "mean ensemble of 2 inputs (OOF in-sample)"
    assert read_board([board.runs["blend"]]).entries[0].model == "mean ensemble of 2 inputs"


def test_a_cv_folder_shared_without_its_fold_runs_is_still_scored(board, tmp_path):
    import shutil

    shutil.copytree(board.runs["cv-b"], tmp_path / "cv", ignore=shutil.ignore_patterns("fold-*"))
    entry = read_board([tmp_path / "cv"]).entries[0]
    assert (entry.kind, entry.model, entry.settings, entry.wall_s) == ("cv", "?", {}, None)
    assert entry.macro_f1 == pytest.approx(read_board([board.runs["cv-b"]]).entries[0].macro_f1)
