import json
import signal

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoModelForImageTextToText, TrainerControl, TrainerState

from mmtune.config import load_config
from mmtune.errors import InputError
from mmtune.generative.trainer_setup import RunCallback, restore_full_weights, trainer_arguments
from mmtune.training.budget import StopSignals


def step(callback: RunCallback, state: TrainerState) -> TrainerControl:
    control = TrainerControl()
    callback.on_step_begin(None, state, control)
    state.global_step += 1
    callback.on_step_end(None, state, control)
    return control


def test_a_signal_saves_and_stops_between_steps_and_logs_go_to_metrics_jsonl(tmp_path):
    signals = StopSignals()
    callback = RunCallback(load_config(None, []), tmp_path, signals, started=0.0)
    state = TrainerState(max_steps=10)
    assert not step(callback, state).should_training_stop
    signals.received = signal.SIGTERM
    control = step(callback, state)
    assert control.should_save and control.should_training_stop and callback.stopped == "signal"
    callback.on_log(None, state, control, logs={"loss": 1.5})
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {"step": 2, "epoch": 0, "loss": 1.5}


def test_the_budget_stops_with_a_save_but_not_after_the_last_step(tmp_path):
    import time

    cfg = load_config(None, ["train.time_budget=1h"])
    callback = RunCallback(cfg, tmp_path, StopSignals(), started=time.monotonic() - 3601)
    state = TrainerState(max_steps=10)
    assert step(callback, state).should_training_stop and callback.stopped == "time_budget"
    last = RunCallback(cfg, tmp_path, StopSignals(), started=time.monotonic() - 3601)
    assert not step(last, TrainerState(max_steps=1)).should_training_stop  # the run ends and saves anyway


def test_mmtune_train_settings_map_to_trainer_arguments(tmp_path):
    cfg = load_config(None, ["train.optimizer=adamw_8bit", "train.schedule=constant", "train.save_every_steps=50",
                             "train.eval_every_steps=25", "train.max_grad_norm=0", "model.gradient_checkpointing=true"])
    args = trainer_arguments(cfg, tmp_path, has_eval=True)
    assert args["optim"] == "adamw_bnb_8bit" and args["lr_scheduler_type"] == "constant_with_warmup"
    assert (args["save_strategy"], args["save_steps"]) == ("steps", 50)
    assert (args["eval_strategy"], args["eval_steps"]) == ("steps", 25)
    assert args["max_grad_norm"] > 1e8 and args["gradient_checkpointing"] and not args["bf16"]
    assert trainer_arguments(cfg, tmp_path, has_eval=False)["eval_strategy"] == "no"


def test_a_full_models_checkpoint_in_the_saved_layout_is_restored_into_every_weight(tiny_llava, tmp_path):
    trained = AutoModelForImageTextToText.from_pretrained(tiny_llava)
    with torch.no_grad():
        for param in trained.parameters():
            param.add_(torch.randn_like(param))
    trained.save_pretrained(tmp_path / "checkpoint-3")  # LLaVA's saved keys: language_model.model.*, not model.*
    model = AutoModelForImageTextToText.from_pretrained(tiny_llava)
    assert model.state_dict().keys() == trained.state_dict().keys()
    assert restore_full_weights(model, tmp_path / "checkpoint-3")
    expected = trained.state_dict()
    assert all(torch.equal(tensor, expected[name]) for name, tensor in model.state_dict().items())
    (tmp_path / "empty").mkdir()
    save_file({"other": torch.zeros(1)}, str(tmp_path / "empty" / "model.safetensors"))
    with pytest.raises(InputError, match="no saved weights for .*cannot resume"):
        restore_full_weights(model, tmp_path / "empty")
