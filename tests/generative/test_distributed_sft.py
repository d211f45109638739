"""sft under a 2-process launcher: one writer for the run folder, every row trained once per epoch."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mmtune.config import load_config, save_config
from tests.generative.conftest import read_metrics, run_config


@pytest.mark.slow
def test_two_process_sft_writes_the_run_folder_once_and_finishes(tiny_llava, colour_chat, tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    if not shutil.which(str(torchrun)):
        pytest.skip("torchrun not installed")
    out = tmp_path / "run"
    cfg = run_config(tiny_llava, colour_chat["chat"], colour_chat["images"], out, "train.epochs=1",
                     "train.batch_size=2", "train.lr=0.004", "train.lr_scaling=linear",
                     "train.reference_batch_size=2")
    save_config(cfg, tmp_path / "sft.yaml")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([str(torchrun), "--nproc_per_node", "2", "-m", "mmtune", "sft", str(tmp_path / "sft.yaml")],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rate = json.loads((out / "learning_rate.json").read_text(encoding="utf-8"))
    assert rate["effective_batch"] == 4 and rate["value"] == pytest.approx(0.008)  # 2 rows x 2 processes
    assert load_config(out / "config.yaml").train.lr == pytest.approx(0.008)
    steps = [m["step"] for m in read_metrics(out) if "loss" in m]
    assert steps == [1, 2]  # 8 rows / (2 per process x 2 processes); each step logged once, by the main process
    assert (out / "model" / "config.json").is_file()
