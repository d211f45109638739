import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.training.conftest import fusion_config, write_config


def read_ids(path):
    with open(path, encoding="utf-8", newline="") as handle:
        return [row["id"] for row in csv.DictReader(handle)]


def launch(*args, timeout=600):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(list(args), capture_output=True, text=True, env=env, timeout=timeout)


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_two_process_ddp_trains_and_predicts_every_post_once(demo_small, tiny_models, tmp_path, launcher):
    run_dir = tmp_path / "run"
    # 72 training posts over 2 processes x batch 5: uneven last batches on purpose.
    config = write_config(fusion_config(demo_small, tiny_models, run_dir, epochs=2, batch_size=5),
                          tmp_path / "c.yaml")
    bin_dir = Path(sys.executable).parent
    if launcher == "torchrun":
        command = [str(bin_dir / "torchrun"), "--nproc_per_node", "2", "-m", "mmtune", "train", str(config)]
    else:
        command = [str(bin_dir / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "-m", "mmtune",
                   "train", str(config)]
    if not shutil.which(command[0]):
        pytest.skip(f"{command[0]} not installed")
    result = launch(*command)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(run_dir / "folds.csv", encoding="utf-8", newline="") as handle:
        val_ids = [row["id"] for row in csv.DictReader(handle) if row["fold"] == "0"]
    predicted = read_ids(run_dir / "val_predictions.csv")
    assert sorted(predicted) == sorted(val_ids) and len(set(predicted)) == len(predicted)
    test_ids = read_ids(run_dir / "test_predictions.csv")
    assert len(test_ids) == len(set(test_ids)) == 24
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # one record per evaluation, written by the main process only
