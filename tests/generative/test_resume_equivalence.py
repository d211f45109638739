"""A run stopped after its first step and resumed ends where the same run left alone ends: the same losses at every
step and the same trained weights (optimizer, schedule, data order and random state all come back from the
checkpoint). For DPO, SFT training the whole model, and each build-vlm stage that trains. (A model trained
without LoRA once resumed from its starting weights: transformers' trainer loads nothing from a checkpoint whose
keys save_pretrained wrote in another layout.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmtune.generative.dpo import run_dpo
from mmtune.generative.sft import run_sft
from mmtune.generative.stages import run_build
from tests.generative.conftest import read_metrics, run_config

pytestmark = pytest.mark.slow


def losses(run_dir: Path) -> list[float]:
    return [row["loss"] for row in read_metrics(run_dir) if "loss" in row]


def weights(run_dir: Path, file: str) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / file))


def run_pair(run: Callable[..., str], args: tuple, overrides: tuple[str, ...], tmp_path: Path) -> tuple[Path, Path]:
    """The run left alone, and the same run stopped after step 1 then resumed: their run folders."""
    whole, interrupted = tmp_path / "whole", tmp_path / "interrupted"
    assert run(run_config(*args, whole, *overrides)) == "finished"
    # A budget spent before the first step ends: the run saves checkpoint-1 and stops there.
    assert run(run_config(*args, interrupted, *overrides, "train.time_budget=0.001")) == "time_budget"
    assert [path.name for path in interrupted.glob("checkpoint-*")] == ["checkpoint-1"]
    assert run(run_config(*args, interrupted, *overrides), resume=True) == "finished"
    return whole, interrupted


def assert_same_run(whole: Path, interrupted: Path, file: str) -> None:
    assert len(losses(whole)) == 8
    assert losses(interrupted) == pytest.approx(losses(whole), rel=1e-5, abs=1e-6)
    expected, got = weights(whole, file), weights(interrupted, file)
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)


def test_dpo_stopped_and_resumed_equals_the_uninterrupted_run(tiny_llava, colour_chat, tmp_path):
    args = (tiny_llava, colour_chat["prefs"], colour_chat["images"])
    overrides = ("model.lora.enabled=true", "train.epochs=2", "train.batch_size=2", "seed=3")
    whole, interrupted = run_pair(run_dpo, args, overrides, tmp_path)
    assert_same_run(whole, interrupted, "adapter/adapter_model.safetensors")


@pytest.mark.parametrize(("stage", "data", "extra"),
                         [("1", "captions", ()), ("2", "chat", ("model.lora.enabled=true",))])
def test_a_build_vlm_stage_stopped_and_resumed_equals_the_uninterrupted_run(tiny_llava, colour_chat, tmp_path,
                                                                           stage, data, extra):
    args = (tiny_llava, colour_chat[data], colour_chat["images"])
    overrides = (f"build.stage={stage}", "train.epochs=2", "train.batch_size=2", "seed=3", *extra)
    whole, interrupted = run_pair(run_build, args, overrides, tmp_path)
    assert_same_run(whole, interrupted, "model/model.safetensors")


def test_sft_of_the_whole_model_stopped_and_resumed_equals_the_uninterrupted_run(tiny_llava, colour_chat, tmp_path,
                                                                                  caplog):
    args = (tiny_llava, colour_chat["chat"], colour_chat["images"])
    whole, interrupted = run_pair(run_sft, args, ("train.epochs=2", "train.batch_size=2", "seed=3"), tmp_path)
    assert_same_run(whole, interrupted, "model/model.safetensors")
    # The trainer's own load of the checkpoint, which finds none of its keys, no longer says so to the user.
    assert not [record for record in caplog.records if "keys in the checkpoint model loaded" in record.getMessage()]
