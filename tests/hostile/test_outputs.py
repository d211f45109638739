"""Hostile output paths and command inputs: no command writes over its inputs, two outputs to one path,
into a folder named like a file, or leaves a temporary file behind; submit ids; model folders that are not.
"""

from __future__ import annotations

import csv
import json
import os
import zipfile

import numpy as np
import pytest

from mmtune.config import load_config, save_config
from mmtune.errors import InputError
from mmtune.evaluation.predictions import Predictions, read_gold_labels, read_predictions, write_predictions
from mmtune.evaluation.submission import SubmitRequest, results_json, submit
from mmtune.outputs import atomic_open, check_outputs, write_text_atomic
from tests.hostile.conftest import assert_one_line_error, fusion_config, run_mmtune, write_config

LABELS = ["image-sarcasm", "multi-sarcasm", "not-sarcasm", "text-sarcasm"]


def oof(path, n=40, seed=0):
    rng = np.random.default_rng(seed)
    targets = np.arange(n) % 4
    probs = rng.dirichlet(np.ones(4), size=n)
    write_predictions(path, Predictions([str(i) for i in range(n)], probs, LABELS, gold=[LABELS[t] for t in targets],
                                        folds=list(np.arange(n) % 5)))
    return path


def leftovers(folder):
    return sorted(p.name for p in folder.rglob("*.tmp"))


# ----------------------------------------------------------------------------------------------
# ensemble


def test_ensemble_out_json_would_be_overwritten_by_its_summary(tmp_path):
    a, b = oof(tmp_path / "a.csv"), oof(tmp_path / "b.csv", seed=1)
    result = run_mmtune("ensemble", a, b, "--out", tmp_path / "e.json")
    assert_one_line_error(result, "--out", "e.json", "the summary")
    assert not (tmp_path / "e.json").exists()


def test_ensemble_out_equal_to_an_input(tmp_path):
    a, b = oof(tmp_path / "a.csv"), oof(tmp_path / "b.csv", seed=1)
    before = a.read_bytes()
    assert_one_line_error(run_mmtune("ensemble", a, b, "--out", a), "--out", "input 1", "a.csv")
    assert a.read_bytes() == before


def test_ensemble_out_is_an_input_under_another_name(tmp_path):
    a, b = oof(tmp_path / "a.csv"), oof(tmp_path / "b.csv", seed=1)
    (tmp_path / "link.csv").symlink_to(a)
    os.link(b, tmp_path / "hard.csv")
    with pytest.raises(InputError, match="is also the input input 1"):
        from mmtune.recipes.ensemble import EnsembleRequest, run_ensemble
        run_ensemble(EnsembleRequest([a, b], out=tmp_path / "link.csv"))
    with pytest.raises(InputError, match="is also the input input 2"):
        run_ensemble(EnsembleRequest([a, b], out=tmp_path / "sub" / ".." / "hard.csv"))


def test_ensemble_oof_output_equal_to_a_test_input(tmp_path):
    from mmtune.recipes.ensemble import EnsembleRequest, run_ensemble

    a, b = oof(tmp_path / "a.csv"), oof(tmp_path / "b.csv", seed=1)
    test_a, test_b = oof(tmp_path / "e.oof.csv", seed=2), oof(tmp_path / "tb.csv", seed=3)
    with pytest.raises(InputError, match=r"the OOF predictions .*e\.oof\.csv: is also the input --test 1"):
        run_ensemble(EnsembleRequest([a, b], out=tmp_path / "e.csv", tests=[test_a, test_b]))


def test_ensemble_out_naming_a_folder_leaves_no_stray_tmp(tmp_path):
    a, b = oof(tmp_path / "a.csv"), oof(tmp_path / "b.csv", seed=1)
    (tmp_path / "outdir").mkdir()
    assert_one_line_error(run_mmtune("ensemble", a, b, "--out", tmp_path / "outdir"), "outdir", "is a folder")
    assert leftovers(tmp_path) == [] and not (tmp_path / "outdir.tmp").exists()


def test_ensemble_prints_its_real_summary_path(tmp_path):
    a, b = oof(tmp_path / "a.csv"), oof(tmp_path / "b.csv", seed=1)
    result = run_mmtune("ensemble", a, b, "--out", tmp_path / "e.csv")
    assert result.returncode == 0, result.stderr
    assert "summary" in result.stdout and "e.json" in result.stdout
    assert json.loads((tmp_path / "e.json").read_text())["outputs"]["summary"] == str(tmp_path / "e.json")
    assert leftovers(tmp_path) == []


# ----------------------------------------------------------------------------------------------
# submit


def prediction_csv(path, ids, label="not-sarcasm"):
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "label"])
        writer.writerows([pid, label] for pid in ids)
    return path


@pytest.mark.parametrize("odd", ["²", "١", "٣٢", "¹⁰", "三"])
def test_submit_ids_that_are_unicode_digits_sort_as_text(tmp_path, odd):
    preds = prediction_csv(tmp_path / "p.csv", ["10", odd, "2", "b", "1"])
    result = run_mmtune("submit", preds, "--out", tmp_path / "r.zip")
    assert result.returncode == 0, result.stdout + result.stderr
    with zipfile.ZipFile(tmp_path / "r.zip") as archive:
        order = list(json.loads(archive.read("results.json"))["results"])
    assert order == ["1", "2", "10", *sorted([odd, "b"])]


def test_results_sort_numbers_then_text():
    sub = Predictions(["b", "10", "²", "9", "a"], None, [], decided=["x"] * 5)
    assert list(results_json(sub, "test")["results"]) == ["9", "10", "a", "b", "²"]


@pytest.mark.parametrize("fmt", ["vimmsd", "csv"])
def test_submit_out_equal_to_its_predictions_or_ids(tmp_path, fmt):
    preds = prediction_csv(tmp_path / "p.csv", ["1", "2"])
    before = preds.read_bytes()
    assert_one_line_error(run_mmtune("submit", preds, "--out", preds, "--format", fmt), "--out", "predictions")
    assert preds.read_bytes() == before
    ids = tmp_path / "test.jsonl"
    ids.write_text('{"id": "1"}\n{"id": "2"}\n', encoding="utf-8")
    with pytest.raises(InputError, match="is also the input --ids"):
        submit(SubmitRequest(preds, ids, fmt=fmt, ids_from=ids))


def test_submit_out_naming_a_folder(tmp_path):
    preds = prediction_csv(tmp_path / "p.csv", ["1", "2"])
    (tmp_path / "r.zip").mkdir()
    assert_one_line_error(run_mmtune("submit", preds, "--out", tmp_path / "r.zip"), "r.zip", "is a folder")
    assert leftovers(tmp_path) == []


# ----------------------------------------------------------------------------------------------
# inspect --json, folds --out, predict --out, report --out


def tiny_jsonl(tmp_path):
    data = tmp_path / "d.jsonl"
    rows = [{"id": str(i), "image": [], "caption": f"post {i}", "label": ["a", "b"][i % 2]} for i in range(8)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return data


def test_inspect_json_onto_its_data_file(tmp_path):
    data = tiny_jsonl(tmp_path)
    before = data.read_bytes()
    result = run_mmtune("inspect", data, "--json", data)
    assert_one_line_error(result, "--json", "is also the input data")
    assert data.read_bytes() == before and result.stdout == ""


def test_inspect_json_naming_a_folder(tmp_path):
    data = tiny_jsonl(tmp_path)
    (tmp_path / "audit").mkdir()
    assert_one_line_error(run_mmtune("inspect", data, "--json", tmp_path / "audit"), "--json", "is a folder")
    assert leftovers(tmp_path) == []


def test_folds_out_onto_its_data_file_or_a_folder(tmp_path):
    data = tiny_jsonl(tmp_path)
    assert_one_line_error(run_mmtune("folds", data, "--out", data, "-k", "2"), "--out", "is also the input data")
    assert_one_line_error(run_mmtune("folds", data, "--out", tmp_path, "-k", "2"), "--out", "is a folder")
    assert_one_line_error(run_mmtune("folds", data, "--out", tmp_path / "f.csv", "-k", "1"), "--folds: must be >= 2")


def test_predict_out_onto_its_data_or_the_run(tmp_path):
    data = tiny_jsonl(tmp_path)
    run_dir = tmp_path / "run"
    (run_dir / "best").mkdir(parents=True)
    (run_dir / "config.yaml").write_text("name: x\n")
    (run_dir / "best" / "trainable.safetensors").write_bytes(b"x")
    assert_one_line_error(run_mmtune("predict", run_dir, data, "--out", data), "--out", "is also the input data")
    assert_one_line_error(run_mmtune("predict", run_dir, data, "--out", run_dir / "config.yaml"),
                          "run file config.yaml")
    assert_one_line_error(run_mmtune("predict", run_dir, data, "--out", run_dir / "best" / "trainable.safetensors"),
                          "run file best/trainable.safetensors")
    assert_one_line_error(run_mmtune("predict", run_dir, data, "--out", run_dir), "--out", "is a folder")


def test_report_out_onto_a_run_file_and_negative_gallery(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text("{}\n")
    assert_one_line_error(run_mmtune("report", run_dir, "--out", run_dir / "metrics.jsonl"),
                          "--out", "run file metrics.jsonl")
    assert_one_line_error(run_mmtune("report", run_dir, "--gallery", "-5"), "--gallery: must be >= 0", "got -5")


# ----------------------------------------------------------------------------------------------
# train / cv / sft output_dir


def test_train_output_dir_that_is_a_file(tmp_path, demo_small, tiny_models):
    (tmp_path / "taken").write_text("mine")
    config = write_config(fusion_config(demo_small, tiny_models, tmp_path / "taken"), tmp_path / "c.yaml")
    result = run_mmtune("train", config)
    assert_one_line_error(result, "output_dir", "taken", "is a file, not a folder")
    assert result.stderr.strip().count("\n") == 0 and (tmp_path / "taken").read_text() == "mine"


@pytest.mark.parametrize("command", ["train", "cv", "sft"])
def test_run_inputs_inside_what_the_run_writes(tmp_path, demo_small, tiny_models, command):
    config = fusion_config(demo_small, tiny_models, tmp_path / "run")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_bytes(demo_small.train.read_bytes())
    config["data"]["train"] = str(tmp_path / "run" / "config.yaml")
    result = run_mmtune(command, write_config(config, tmp_path / "c.yaml"))
    assert_one_line_error(result, "output_dir/config.yaml", "is also the input data.train")


def test_missing_data_file_is_the_only_line(tmp_path, demo_small, tiny_models):
    config = fusion_config(demo_small, tiny_models, tmp_path / "run")
    config["data"]["test"] = str(tmp_path / "nope.json")
    result = run_mmtune("train", write_config(config, tmp_path / "c.yaml"))
    assert_one_line_error(result, "data.test", "file not found", "nope.json")
    assert result.stderr.strip().count("\n") == 0 and not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------------------------
# model folders


@pytest.mark.parametrize(
    ("kind_and_path", "fragments"),
    [
        (("vilt", "{tmp}/no-such-vilt"), ("model.name", "no-such-vilt", "not found")),
        (("vilt", "./no-such-vilt"), ("model.name", "not found")),
        (("vilt", "{bert}"), ("model.name", "is a bert model", "model.kind=vilt needs a vilt checkpoint")),
        (("vilt", "{tmp}/empty"), ("model.name", "has no config.json")),
        (("vilt", "{tmp}/file.bin"), ("model.name", "is a file, not a model folder")),
        (("vilt", "{tmp}/badjson"), ("model.name", "config.json is not valid JSON")),
        (("fusion-text", "{tmp}/no-such-bert"), ("model.fusion.text_encoder", "not found")),
        (("fusion-image", "{tmp}/empty"), ("model.fusion.image_encoder", "has no config.json")),
    ],
)
def test_model_folders_that_are_not(tmp_path, demo_small, tiny_models, kind_and_path, fragments):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.bin").write_bytes(b"x")
    (tmp_path / "badjson").mkdir()
    (tmp_path / "badjson" / "config.json").write_bytes(b"{\xff")
    kind, path = kind_and_path
    path = path.format(tmp=tmp_path, bert=tiny_models["bert"])
    config = fusion_config(demo_small, tiny_models, tmp_path / "run")
    if kind == "vilt":
        config["model"] = {"kind": "vilt", "name": path}
    else:
        config["model"]["fusion"]["text_encoder" if kind == "fusion-text" else "image_encoder"] = path
    result = run_mmtune("train", write_config(config, tmp_path / "c.yaml"), cwd=tmp_path)
    assert_one_line_error(result, *fragments)
    assert result.stderr.strip().count("\n") == 0


def test_vilt_in_code_refuses_another_architecture(tiny_models, tmp_path):
    from mmtune.config import load_config
    from mmtune.models.vilt import ViltClassifier

    cfg = load_config(None, ["model.kind=vilt", f"model.name={tiny_models['bert']}"])
    with pytest.raises(InputError, match="is a bert model"):
        ViltClassifier(cfg, ["a", "b"], 2)


def test_vilt_hub_id_offline_is_one_line(monkeypatch):
    from mmtune.config import load_config
    from mmtune.models.vilt import ViltClassifier

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = load_config(None, ["model.kind=vilt", "model.name=nobody-here/not-a-vilt-model"])
    with pytest.raises(InputError, match=r"model\.name: 'nobody-here/not-a-vilt-model' is neither a model folder"):
        ViltClassifier(cfg, ["a", "b"], 2)


def test_image_size_ignored_by_a_fixed_size_encoder_is_said_once(caplog):
    from mmtune.models import sources

    sources._said.discard("enc")
    with caplog.at_level("INFO", logger="mmtune"):
        sources.note_fixed_image_size("enc", 32, 100, 224)
        sources.note_fixed_image_size("enc", 32, 100, 224)
        sources.note_fixed_image_size("other", 32, 224, 224)
    notes = [r.getMessage() for r in caplog.records]
    assert notes == ["data.image.size=100 is not used: enc takes 32x32 images"]


# ----------------------------------------------------------------------------------------------
# The helper itself


def test_atomic_write_failure_leaves_the_old_file_and_no_temp(tmp_path):
    out = tmp_path / "o.csv"
    out.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(out) as handle:
        handle.write("half")
        raise RuntimeError("disk full")
    assert out.read_text() == "old" and leftovers(tmp_path) == [] and sorted(os.listdir(tmp_path)) == ["o.csv"]


def test_two_outputs_on_one_path_are_refused(tmp_path):
    with pytest.raises(InputError, match="is also where --out is written"):
        check_outputs({"--out": tmp_path / "a", "summary": tmp_path / "x" / ".." / "a"})


def test_write_text_atomic_into_a_file_as_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="cannot create its folder"):
        write_text_atomic(tmp_path / "f" / "out.json", "{}")


def test_error_line_starts_on_a_line_of_its_own_after_a_live_progress_bar(capsys):
    import tqdm

    from mmtune.cli import _report_error

    bar = tqdm.tqdm(total=10, desc="epoch 1", mininterval=0)
    bar.update(3)
    _report_error("data.train: bad")
    err = capsys.readouterr().err
    before, _, after = err.rpartition("mmtune: error: ")
    assert after == "data.train: bad\n"
    assert before.endswith(("\r", "\n")), repr(before[-80:])
    assert not tqdm.tqdm._instances


# ----------------------------------------------------------------------------------------------
# Prediction files handed to submit and ensemble


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (b"id,label\n1,not-sarcasm\n2,caf\xe9\n", ("p.csv", "not UTF-8 text: byte 0xe9 at line 3, byte offset 28")),
        (b'id,label\n1,"not-sarcasm\n2,not-sarcasm\n', ("p.csv:2", "opened on line 2 runs on over line 3")),
        (b'id,label\n1,"not-sarcasm\n', ("p.csv:2", "quoted field opened on line 2 is never closed")),
        (b'id,label\n1,"not"-sarcasm\n', ("p.csv:2", "malformed CSV")),
        (b"id,label\n1,not-sarcasm,extra\n", ("p.csv:2", "3 fields, but the header has 2 columns")),
        (b"id,label\n1\n", ("p.csv:2", "1 fields, but the header has 2 columns")),
        (b"id,label,label\n1,a,b\n", ("p.csv", "column 'label' appears twice")),
        (b"id,label\n1," + b"x" * 200_000 + b"\n", ("p.csv:2", "a field of 200000 characters, over the 131072")),
        (b"id,label\n 1,not-sarcasm\n \t,not-sarcasm\n", ("p.csv:3", "empty id")),
        (b",not-sarcasm\n", ("p.csv", "expected columns id,label")),
    ],
)
def test_submit_hostile_prediction_files(tmp_path, content, fragments):
    preds = tmp_path / "p.csv"
    preds.write_bytes(content)
    assert_one_line_error(run_mmtune("submit", preds, "--out", tmp_path / "r.zip"), *fragments)
    assert not (tmp_path / "r.zip").exists() and leftovers(tmp_path) == []


# Every CSV mmtune reads goes through mmtune.data.csvfile: before, these readers gave a UnicodeDecodeError
# traceback, "p_b must be a number, got None" for a short row, and let a runaway quote swallow rows.
CSV_READERS = {"read_predictions": read_predictions,
               "decisions_only": lambda path: read_predictions(path, decisions_only=True),
               "read_gold_labels": read_gold_labels}


@pytest.mark.parametrize("reader", list(CSV_READERS))
@pytest.mark.parametrize(
    ("header", "body", "message"),
    [
        (b"id,p_a,p_b", b"1,0.5,0.5\n2,caf\xe9,0.5\n", "x.csv: not UTF-8 text: byte 0xe9 at line 3, byte offset "),
        (b"id,p_a,p_b", b"1,0.5,0.5\n2,0.5\n", "x.csv:3: 2 fields, but the header has 3 columns"),
        (b"id,p_a,p_b", b'1,"0.5,0.5\n2,0.5,0.5\n3,0.5,0.5\n',
         "x.csv:2: a quoted field opened on line 2 runs on over line 3"),
        (b"id,p_a,p_b", b",0.5,0.5\n", "x.csv:2: empty id"),
        (b"id,p_a,p_a", b"1,0.5,0.5\n", "x.csv: column 'p_a' appears twice in the header"),
    ],
)
def test_every_csv_reader_checks_rows_strictly(tmp_path, reader, header, body, message):
    path = tmp_path / "x.csv"
    if reader == "read_gold_labels":
        header = b"id,label,extra" if header.count(b"p_a") == 1 else b"id,label,label"
    path.write_bytes(header + b"\n" + body)
    with pytest.raises(InputError) as info:
        CSV_READERS[reader](path)
    expected = message.replace("'p_a'", "'label'") if reader == "read_gold_labels" else message
    assert str(info.value).startswith(str(tmp_path / expected))


def test_gold_labels_and_predictions_read_back(tmp_path):
    gold = tmp_path / "gold.csv"
    gold.write_text("id,label\n1,a\n2,b\n", encoding="utf-8")
    assert read_gold_labels(gold) == {"1": "a", "2": "b"}
    gold.write_text("id,label\n1,a\n1,b\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"gold\.csv:3: id '1' appears twice"):
        read_gold_labels(gold)
    gold.write_text("id,gold\n1,a\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"gold\.csv: expected columns id,label \(gold labels\)"):
        read_gold_labels(gold)
    preds = tmp_path / "p.csv"
    write_predictions(preds, Predictions(["1", "2"], np.array([[0.25, 0.75], [0.5, 0.5]]), ["a", "b"]))
    pred = read_predictions(preds)
    assert (pred.ids, pred.labels) == (["1", "2"], ["a", "b"]) and np.allclose(pred.probs, [[0.25, 0.75], [0.5, 0.5]])
    assert read_predictions(preds, decisions_only=True).predicted == ["b", "a"]


def test_ensemble_input_with_repeated_p_columns_or_empty_id(tmp_path):
    twice = tmp_path / "twice.csv"
    twice.write_text("id,label,p_a,p_a,p_b\n1,a,0.5,0.5,0\n", encoding="utf-8")
    with pytest.raises(InputError, match="column 'p_a' appears twice"):
        read_predictions(twice)
    empty = tmp_path / "empty.csv"
    empty.write_text("id,label,p_a,p_b\n,a,0.5,0.5\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"empty\.csv:2: empty id"):
        read_predictions(empty)
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"id,label,p_a,p_b\n1,\xff,0.5,0.5\n")
    assert_one_line_error(run_mmtune("ensemble", binary, twice, "--out", tmp_path / "e.csv"), "bin.csv", "not UTF-8")


# ----------------------------------------------------------------------------------------------
# demo and make-tiny: folders they write (the demo deletes its --run-dir)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--run-dir", "."], ("--run-dir .", "holds --out")),
        (["--out", "d", "--run-dir", "d"], ("--run-dir d", "holds --out")),
        (["--run-dir", "notes.txt"], ("--run-dir notes.txt", "is a file")),
        (["--run-dir", "mine"], ("--run-dir mine", "not a mmtune run")),
        (["--out", "notes.txt"], ("--out notes.txt", "is a file")),
        (["--n-train", "5"], ("--n-train", "must be >= 40")),
        (["--seed", "-1"], ("--seed", "must be in [0, 4294967295]")),
    ],
)
def test_demo_refuses_folders_it_must_not_delete(tmp_path, args, fragments):
    (tmp_path / "notes.txt").write_text("keep")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("keep")
    result = run_mmtune("demo", *args, cwd=tmp_path)
    assert_one_line_error(result, *fragments)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "keep" and (tmp_path / "notes.txt").read_text() == "keep"


def test_make_tiny_into_a_file_or_a_foreign_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "a.txt").write_text("x")
    assert_one_line_error(run_mmtune("make-tiny", "bert", tmp_path / "f"), "is a file")
    assert_one_line_error(run_mmtune("make-tiny", "bert", tmp_path / "mine"), "no config.json")


@pytest.mark.parametrize("command", [["folds", "d.jsonl", "--out", "f.csv"], ["ensemble", "a.csv", "--out", "e.csv"]])
def test_seed_options_have_the_config_seed_range(tmp_path, command):
    result = run_mmtune(*command, "--seed", "99999999999999999999", cwd=tmp_path)
    assert_one_line_error(result, "--seed", "must be in [0, 4294967295]")


def test_predict_with_a_run_whose_model_folder_is_gone(tmp_path):
    data = tiny_jsonl(tmp_path)
    run_dir = tmp_path / "run"
    (run_dir / "best").mkdir(parents=True)
    save_config(load_config(None, ["model.kind=vilt", f"model.name={tmp_path / 'gone'}"]), run_dir / "config.yaml")
    result = run_mmtune("predict", run_dir, data, "--out", tmp_path / "p.csv")
    assert_one_line_error(result, "model.name", "gone", "not found")
    assert result.stderr.strip().count("\n") == 0


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_an_output_that_is_a_fifo_or_device_is_never_replaced(tmp_path):
    fifo = tmp_path / "out.csv"
    os.mkfifo(fifo)
    preds = prediction_csv(tmp_path / "p.csv", ["1", "2"])
    assert_one_line_error(run_mmtune("submit", preds, "--out", fifo, "--format", "csv", timeout=30),
                          "--out", "is not a regular file")
    assert_one_line_error(run_mmtune("submit", preds, "--out", "/dev/null", timeout=30), "is not a regular file")
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")
    with pytest.raises(InputError, match="is not a regular file"), atomic_open(fifo) as handle:
        handle.write("x")


def test_predict_with_a_missing_data_file_fails_before_loading_anything(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    result = run_mmtune("predict", run_dir, tmp_path / "nope.jsonl", "--out", tmp_path / "p.csv")
    assert_one_line_error(result, "nope.jsonl: data file not found")
    assert result.stderr.strip().count("\n") == 0 and "torch" not in result.stderr
