"""Holes found by reading the hardening change once more: odd paths, unbounded reads, checks the Python API skipped."""

from __future__ import annotations

import os

import pytest

from mmtune import api
from mmtune.config import load_config
from mmtune.errors import InputError
from mmtune.evaluation.report import write_report
from mmtune.training.checkpoint import read_state
from tests.hostile.conftest import assert_one_line_error, run_mmtune, write_config
from tests.hostile.test_outputs import tiny_jsonl
from tests.hostile.test_report_markup import make_run


def test_a_nul_in_output_dir_is_exit_2_not_a_traceback(tmp_path):
    data = tiny_jsonl(tmp_path)
    config = write_config({"output_dir": "run\x00x", "data": {"train": str(data)}}, tmp_path / "c.yaml")
    assert_one_line_error(run_mmtune("train", config), "not a usable path")


def test_a_model_config_json_with_a_5000_digit_number_is_exit_2(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "vilt", "n": ' + "9" * 5000 + "}")
    data = tiny_jsonl(tmp_path)
    config = write_config({"output_dir": str(tmp_path / "run"), "data": {"train": str(data)},
                           "model": {"kind": "vilt", "name": str(folder)}}, tmp_path / "c.yaml")
    assert_one_line_error(run_mmtune("train", config), "model.name", "config.json is not valid JSON")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_as_metrics_jsonl_or_trainer_state_never_blocks(tmp_path):
    run = make_run(tmp_path, "run", "r", ["a", "b"], ["x", "y"])
    (run / "metrics.jsonl").unlink()
    os.mkfifo(run / "metrics.jsonl")
    with pytest.raises(InputError, match=r"metrics.jsonl: is a FIFO, not a file"):
        write_report(run, tmp_path / "r.html")
    last = tmp_path / "last"
    last.mkdir()
    os.mkfifo(last / "trainer_state.json")
    with pytest.raises(InputError, match=r"trainer_state.json: damaged, not JSON \(.*FIFO"):
        read_state(last)


def test_a_metrics_line_with_a_5000_digit_number_is_named(tmp_path):
    run = make_run(tmp_path, "run", "r", ["a", "b"], ["x", "y"])
    (run / "metrics.jsonl").write_text('{"step": ' + "1" * 5000 + "}\n")
    with pytest.raises(InputError, match=r"metrics.jsonl:1: a JSON number with too many digits"):
        write_report(run, tmp_path / "r.html")


def test_the_python_api_checks_inputs_before_any_work_as_the_cli_does(tmp_path):
    cfg = load_config(None, [f"output_dir={tmp_path / 'run'}", f"data.train={tmp_path / 'missing.jsonl'}"])
    for call in (api.fit, api.cv):
        with pytest.raises(InputError, match=r"data.train: file not found"):
            call(cfg)
    assert not (tmp_path / "run").exists()
