"""sft, dpo and build-vlm log to the trackers as `train` does: TensorBoard's events in the run folder itself, W&B's
run named after the run folder (training/trackers)."""

import os
import sys

import pytest

from mmtune.generative.dpo import run_dpo
from mmtune.generative.sft import run_sft
from mmtune.generative.stages import run_build
from tests.generative.conftest import read_metrics, run_config
from tests.training.conftest import run_mmtune, write_config
from tests.training.test_trackers import fake_wandb, wandb_calls  # noqa: F401

pytest.importorskip("tensorboard")


def scalars(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    [events] = run_dir.rglob("events.out.tfevents.*")
    assert events.parent == run_dir  # not output_dir/runs/<date>_<host>
    accumulator = EventAccumulator(str(events)).Reload()
    return {tag: [event.step for event in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


@pytest.mark.parametrize("verb", ["sft", "dpo", "build-vlm"])
def test_trl_runs_write_their_metrics_to_tensorboard_in_the_run_folder(verb, tiny_llava, colour_chat, tmp_path):
    out = tmp_path / verb
    data = {"sft": colour_chat["chat"], "dpo": colour_chat["prefs"], "build-vlm": colour_chat["captions"]}[verb]
    extra = {"sft": [], "dpo": ["model.lora.enabled=true"], "build-vlm": ["build.stage=1"]}[verb]
    cfg = run_config(tiny_llava, data, colour_chat["images"], out, "train.epochs=1", "train.batch_size=2",
                     "train.log_with=[tensorboard]", *extra)
    run = {"sft": run_sft, "dpo": run_dpo, "build-vlm": run_build}[verb]
    assert run(cfg) == "finished"
    logged = scalars(out)
    # The losses metrics.jsonl records, at the same steps.
    steps = [record["step"] for record in read_metrics(out) if "loss" in record]
    assert steps and logged["train/loss"] == steps


@pytest.mark.slow  # a process of its own: ~40 s on 2 shared cores
def test_sft_names_its_wandb_run_after_the_run_folder(tiny_llava, colour_chat, tmp_path, fake_wandb,  # noqa: F811
                                                     monkeypatch):
    # A process of its own: TRL decides at import whether wandb is installed.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(fake_wandb.parent / "site"), *sys.path]))
    out = tmp_path / "sft-lr-3e-3"
    config = write_config({"train": {"epochs": 1, "batch_size": 4, "log_with": ["wandb"], "log_every_steps": 1}},
                          tmp_path / "c.yaml")
    done = run_mmtune("sft", config, f"output_dir={out}", f"model.name={tiny_llava}",
                      f"data.train={colour_chat['chat']}", f"data.train_images={colour_chat['images']}")
    assert done.returncode == 0, done.stderr[-2000:]
    calls = wandb_calls(fake_wandb)
    [init] = [call for call in calls if call["kind"] == "init"]  # mmtune's run, which transformers' callback uses
    assert (init["project"], init["name"], init["dir"]) == ("mmtune", "sft-lr-3e-3", str(out.resolve()))
    assert any("train/loss" in call["keys"] for call in calls if call["kind"] == "log")
    assert calls[-1]["kind"] == "finish"
