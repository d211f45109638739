"""TRL's steps and metrics as mmtune shows them: log lines of numbers and one bar, not printed dicts of quoted
strings nor an evaluation bar nested in the training bar."""

from __future__ import annotations

import logging
import re

from transformers import TrainerControl, TrainerState

from mmtune.generative.sft import run_sft
from mmtune.generative.trainer_setup import LogCallback, metrics_line
from tests.generative.conftest import run_config


def test_metrics_are_one_line_of_numbers():
    line = metrics_line(10, {"loss": 0.693147, "grad_norm": 1.5234, "learning_rate": 5e-05, "epoch": 0.5,
                             "total_flos": 1234.0, "num_tokens": 960})
    assert line == "step 10: loss 0.6931, grad_norm 1.523, learning_rate 5e-05, epoch 0.5, num_tokens 960"


def test_only_the_main_process_draws_and_logs(caplog):
    state, control = TrainerState(max_steps=4, is_world_process_zero=False), TrainerControl()
    callback = LogCallback()
    with caplog.at_level(logging.INFO):
        callback.on_train_begin(None, state, control)
        callback.on_step_end(None, state, control)
        callback.on_log(None, state, control, logs={"loss": 1.0})
        callback.on_train_end(None, state, control)
    assert callback.bar is None and caplog.messages == []


def test_sft_logs_lines_of_numbers_instead_of_printing_dicts(tiny_llava, colour_chat, tmp_path, capsys, caplog):
    cfg = run_config(tiny_llava, colour_chat["chat"], colour_chat["images"], tmp_path / "run", "train.epochs=1",
                     f"data.val={colour_chat['chat']}")
    with caplog.at_level(logging.INFO, logger="mmtune"):
        assert run_sft(cfg) == "finished"
    printed = capsys.readouterr()
    assert "{'" not in printed.out + printed.err and "\x1b[A" not in printed.err, printed
    steps = [m for m in caplog.messages if re.match(r"step \d+: ", m)]
    assert any(re.match(r"step 1: loss \d+\.\d+, ", m) for m in steps), caplog.messages
    assert any("eval_loss " in m for m in steps) and not any("'" in m for m in steps)
