import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
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
    # Logs and results once, from the main process (issue 11): every rank used to print all of them.
    assert result.stdout.count("done (finished)") == 1 and result.stdout.count("macro-F1 (selection)") == 1
    logged = [line.split(" INFO ", 1)[1] for line in result.stderr.splitlines() if " INFO " in line]
    assert logged and len(logged) == len(set(logged)), logged
    assert sum("training and 24 validation posts" in line for line in logged) == 1
    with open(run_dir / "folds.csv", encoding="utf-8", newline="") as handle:
        val_ids = [row["id"] for row in csv.DictReader(handle) if row["fold"] == "0"]
    predicted = read_ids(run_dir / "val_predictions.csv")
    assert sorted(predicted) == sorted(val_ids) and len(set(predicted)) == len(predicted)
    test_ids = read_ids(run_dir / "test_predictions.csv")
    assert len(test_ids) == len(set(test_ids)) == 24
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # one record per evaluation, written by the main process only
    if launcher == "torchrun":  # predict under the launcher too: every test post once, one writer
        out = tmp_path / "predicted.csv"
        predicted = launch(command[0], "--nproc_per_node", "2", "-m", "mmtune", "predict", str(run_dir),
                           str(demo_small.test), "--images", str(demo_small.test_images), "--out", str(out))
        assert predicted.returncode == 0, predicted.stderr[-3000:]
        assert sorted(read_ids(out)) == sorted(test_ids)
        assert predicted.stdout.count("predictions written to") == 1


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # the field after the state is the parent pid
            found.append(int(stat.parent.name))
    return sorted(found)


def test_a_stop_seen_by_one_rank_stops_every_rank_at_the_same_step(demo_small, tiny_models, tmp_path):
    """SIGTERM to one worker only: both ranks must save last/ and stop together, not wait on each other."""
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun not installed")
    run_dir = tmp_path / "run"
    config = write_config(fusion_config(demo_small, tiny_models, run_dir, epochs=300, batch_size=5),
                          tmp_path / "c.yaml")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([str(torchrun), "--nproc_per_node", "2", "-m", "mmtune", "train", str(config)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 300
        while not (run_dir / "last" / "trainer_state.json").exists():  # the first epoch is done
            assert process.poll() is None, process.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "training did not start"
            time.sleep(0.2)
        workers = _children(process.pid)
        assert len(workers) == 2, workers
        os.kill(workers[-1], signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:  # a hang: end the workers too, not only the launcher
            for pid in [*_children(process.pid), process.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    assert stderr.count("stop signal received") == 2, stderr[-3000:]  # both ranks, at the same step
    state = json.loads((run_dir / "last" / "trainer_state.json").read_text())
    assert not state["finished"] and state["global_step"] > 0
    resumed = launch(str(torchrun), "--nproc_per_node", "2", "-m", "mmtune", "train", str(config), "--resume",
                     f"train.epochs={state['epoch'] + 1}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run_dir / "last" / "trainer_state.json").read_text())["finished"]


def test_two_process_cv_writes_every_post_once_with_a_shared_budget(demo_small, tiny_models, tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun not installed")
    config = fusion_config(demo_small, tiny_models, tmp_path / "cv", epochs=1, batch_size=5, time_budget="1h")
    config["cv"] = {"folds": 2}
    result = launch(str(torchrun), "--nproc_per_node", "2", "-m", "mmtune", "cv",
                    str(write_config(config, tmp_path / "cv.yaml")))
    assert result.returncode == 0, result.stderr[-3000:]
    oof = read_ids(tmp_path / "cv" / "oof.csv")
    train_ids = json.loads(demo_small.train.read_text(encoding="utf-8"))
    assert sorted(oof) == sorted(train_ids)
    assert len(read_ids(tmp_path / "cv" / "test.csv")) == 24
