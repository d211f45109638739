import math

import pytest
from transformers import AutoModelForImageTextToText

from mmtune.errors import InputError
from mmtune.generative.dpo import dpo_trainer, run_dpo
from mmtune.generative.sft import read_chat_splits
from mmtune.generative.trainer_setup import load_vlm, lora_config
from tests.generative.conftest import read_metrics, run_config


def test_dpo_with_lora_starts_at_log_2_and_prefers_the_chosen_answers(tiny_llava, colour_chat, tmp_path):
    out = tmp_path / "run"
    cfg = run_config(tiny_llava, colour_chat["prefs"], colour_chat["images"], out, "model.lora.enabled=true",
                     "train.epochs=3", "train.batch_size=2", "train.lr=0.01")
    assert run_dpo(cfg) == "finished"
    metrics = [m for m in read_metrics(out) if "loss" in m]
    # With LoRA the reference is the base with adapters off: at step 1 policy == reference, margins are 0.
    assert metrics[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert metrics[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-6)
    assert metrics[-1]["loss"] < metrics[0]["loss"] and metrics[-1]["rewards/margins"] > 0
    assert (out / "adapter" / "adapter_config.json").is_file()
    AutoModelForImageTextToText.from_pretrained(out / "model")


def test_with_lora_there_is_no_second_model_the_reference_is_the_base_with_adapters_off(tiny_llava, colour_chat,
                                                                                        tmp_path):
    from peft import PeftModel

    cfg = run_config(tiny_llava, colour_chat["prefs"], colour_chat["images"], tmp_path / "run",
                     "model.lora.enabled=true")
    model, processor = load_vlm(cfg)
    trainer = dpo_trainer(cfg, model, processor, read_chat_splits(cfg, preference=True), tmp_path / "run",
                          lora_config(cfg, model))
    assert trainer.ref_model is None and isinstance(trainer.model, PeftModel)


def test_beta_and_loss_type_reach_trl(tiny_llava, colour_chat, tmp_path):
    cfg = run_config(tiny_llava, colour_chat["prefs"], colour_chat["images"], tmp_path / "run", "train.epochs=1",
                     "train.batch_size=2", "dpo.loss_type=[ipo]", "dpo.beta=0.5", "train.lr=0.0")
    assert run_dpo(cfg) == "finished"
    first = read_metrics(tmp_path / "run")[0]
    # IPO at the start (no LoRA: TRL's frozen copy is the reference): (0 - 1 / (2 beta))^2 = 1 for beta 0.5.
    assert first["loss"] == pytest.approx(1.0, abs=1e-5)


def test_bad_dpo_settings_and_chat_rows_are_input_errors(tiny_llava, colour_chat, tmp_path):
    args = (tiny_llava, colour_chat["prefs"], colour_chat["images"], tmp_path / "run")
    with pytest.raises(InputError, match="dpo.loss_type"):
        run_dpo(run_config(*args, "dpo.loss_type=[sigmoidd]"))
    with pytest.raises(InputError, match="dpo.beta"):
        run_dpo(run_config(*args[:3], tmp_path / "run2", "dpo.beta=0"))
    with pytest.raises(InputError, match="DPO needs preference rows"):
        run_dpo(run_config(tiny_llava, colour_chat["chat"], colour_chat["images"], tmp_path / "run3"))


def test_time_budget_stops_with_a_checkpoint_and_resume_finishes_the_dpo_run(tiny_llava, colour_chat, tmp_path):
    out = tmp_path / "run"
    args = (tiny_llava, colour_chat["prefs"], colour_chat["images"], out, "model.lora.enabled=true",
            "train.epochs=2", "train.batch_size=2")
    assert run_dpo(run_config(*args, "train.time_budget=0.001")) == "time_budget"
    assert (out / "checkpoint-1").is_dir() and not (out / "model").exists()
    assert run_dpo(run_config(*args), resume=True) == "finished"
    steps = [m["step"] for m in read_metrics(out) if "loss" in m]
    assert steps == list(range(1, 9))  # 8 rows / 2 per step x 2 epochs, each step once
    assert (out / "adapter" / "adapter_config.json").is_file()

