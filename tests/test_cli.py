import json
import os
import subprocess
import sys

import pytest

from mmtune.cli import main


def run_cli(*args):
    """The real console entry point in a subprocess: what users see, tracebacks included."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "mmtune", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120)


def test_inspect_exits_0_on_faulty_data_and_writes_json(faulty_vimmsd, tmp_path, capsys):
    out = tmp_path / "audit.json"
    code = main(["inspect", str(faulty_vimmsd.json), "--images", str(faulty_vimmsd.images), "--json", str(out),
                 "data.labels=[not-sarcasm,multi-sarcasm,image-sarcasm,text-sarcasm]"])
    assert code == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert {f["kind"] for f in report["faults"]} >= {"unsafe_path", "missing_image", "unknown_label"}
    printed = capsys.readouterr().out
    assert "faults" in printed and "unsafe_path" in printed and "imbalance ratio" in printed


def test_folds_command_writes_folds_csv(faulty_vimmsd, tmp_path):
    out = tmp_path / "folds.csv"
    assert main(["folds", str(faulty_vimmsd.json), "--images", str(faulty_vimmsd.images), "-k", "2",
                 "--out", str(out)]) == 0
    rows = out.read_text().splitlines()
    assert rows[0] == "id,fold" and len(rows) == 1 + 9  # 14 rows, 5 bad (unknown label kept: inferred labels)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["inspect", "{root}/nope.json", "--images", "{root}"], "nope.json: data file not found"),
        (["inspect", "{root}/bad.json", "--images", "{root}"], "bad.json: invalid JSON at line 1"),
        (["inspect", "{root}/bad.csv", "--images", "{root}"], "bad.csv: no column 'caption' (data.columns.text)"),
        (["inspect", "{json}", "--images", "{images}", "data.colums.text=x"], "unknown key 'data.colums'"),
        (["folds", "{json}", "--images", "{images}", "--out", "{root}/f.csv", "data.on_bad_row=error"],
         "train.json: post '2' (row 2): missing_image: 'missing.jpg' not found"),
    ],
)
def test_bad_input_exits_2_with_one_line(faulty_vimmsd, args, message):
    root = faulty_vimmsd.root
    (root / "bad.json").write_text('{"0": {"image": ')
    (root / "bad.csv").write_text("id,image,text\n1,a.jpg,x\n")
    filled = [a.format(root=root, json=faulty_vimmsd.json, images=faulty_vimmsd.images) for a in args]
    result = run_cli(*filled)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("mmtune: error: ") and message in lines[0]


def test_config_schema_lists_documented_keys(capsys):
    assert main(["config", "--schema"]) == 0
    printed = capsys.readouterr().out
    assert "data.on_bad_row" in printed and "data.text.teencode" in printed


# ----------------------------------------------------------------------------------------------
# mmtune config: CONFIG first (or --config), checked as a run checks it, the schema verbatim


def test_config_verb_takes_the_file_first_or_by_option(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("name: x\ntrain:\n  lr: 1e-4\n")
    assert main(["config", str(config), "seed=3"]) == 0
    first = capsys.readouterr().out
    assert main(["config", "--config", str(config), "seed=3"]) == 0
    assert capsys.readouterr().out == first and "name: x\n" in first and "seed: 3\n" in first
    assert main(["config", str(config), "--config", str(config)]) == 2
    assert "config given twice" in capsys.readouterr().err
    # An override first is an override, however long (no file name can be that long) or odd.
    assert main(["config", f"data.labels=[{'a' * 300}]", "name=a=b"]) == 0
    assert f"- {'a' * 300}\n" in capsys.readouterr().out


def test_config_verb_refuses_what_a_run_refuses_naming_key_and_source(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  kind: vilt\n  fusion:\n    method: gated\n")
    cases = [
        (["model.kind=bar"], "override 'model.kind=bar': model.kind: unknown kind 'bar' (known: fusion, vilt,"),
        ([str(config)], f"{config}:4: model.fusion.method: belongs to kind fusion, but model.kind is vilt"),
        (["model.fusion.method=sum"], "override 'model.fusion.method=sum': model.fusion.method: unknown fusion"),
        (["model.freeze.preset=most"], "model.freeze.preset: unknown preset 'most' (known: all,"),
        (["train.loss=hinge"], "override 'train.loss=hinge': 'train.loss' must be one of"),
        (["dpo.loss_type=[ipo, x]"], "'dpo.loss_type[1]' must be one of 'sigmoid',"),
    ]
    for args, message in cases:
        assert main(["config", *args]) == 2, args
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mmtune: error: ") and message in lines[0], (message, lines)


def test_config_schema_prints_brackets_and_every_choice_verbatim_one_line_per_key():
    from mmtune.models.kinds import known_kinds

    result = run_cli("config", "--schema")
    assert result.returncode == 0, result.stderr
    lines = {line.partition(" = ")[0]: line for line in result.stdout.splitlines()}
    assert lines["data.columns.extra_text"].endswith("extra text columns packed after the main text, e.g. [ocr]")
    assert lines["model.kind"].endswith(f"(valid: not empty, one of {', '.join(known_kinds())})")
    assert "one of sigmoid, hinge, ipo, exo_pair, nca_pair, robust, bco_pair, sppo_hard, aot, aot_unpaired, " \
           "apo_zero, apo_down, discopop, sft, sigmoid_norm)" in lines["dpo.loss_type"]
    assert "train.metric = macro_f1  " in lines["train.metric"] and "log_loss)" in lines["train.metric"]
    assert len(lines) == len(result.stdout.splitlines()) > 100  # not wrapped: each line is one key


def test_config_checks_load_no_torch():
    # `mmtune config` is the quick check of a config: the kinds, fusions and presets are known by name only.
    code = ("import sys; from mmtune.recipes.config import checked_config, schema; schema(); "
            "checked_config(None, ['model.kind=vilt', 'model.freeze.preset=all']); "
            "print(sorted(m for m in ('torch', 'transformers', 'peft', 'accelerate') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr
