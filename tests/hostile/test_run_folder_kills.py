"""SIGKILL at random moments, mid-save included, then `--resume`: the run ends identical to an uninterrupted one."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from tests.hostile.conftest import fusion_config, run_mmtune, write_config

KILLS_PER_RUN = 5
KILLS_PER_SETTING = 10
# Two loops: checkpoints every 2 optimizer steps with evaluations every 3; checkpoints only at epoch ends, right
# after the epoch's metrics line (the window in which a kill used to leave a duplicated line).
SETTINGS = {
    "steps": {"epochs": 3, "batch_size": 4, "grad_accum": 2, "save_every_steps": 2, "eval_every_steps": 3},
    "epochs": {"epochs": 4, "batch_size": 8},
}


def _start(config: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "mmtune", "train", str(config), "--resume"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _metrics_count(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _kill_when(process: subprocess.Popen, ready, timeout: float = 600) -> bool:
    """SIGKILL the process as soon as `ready()`; False when it ended first (the run finished)."""
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        if ready():
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
        assert time.monotonic() < deadline, "timed out"
    assert process.returncode == 0, f"exit {process.returncode}"
    return False


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def _one_kill(config: Path, run_dir: Path, mode: str, rng: random.Random) -> str | None:
    """Start `train --resume`, kill it at a moment chosen by `mode`; what the kill hit, or None if it finished."""
    tmp, lock, before = run_dir / "last.tmp", run_dir / "mmtune.lock", _metrics_count(run_dir)
    stale = _stamp(tmp)  # a last.tmp left by an earlier kill is not a save in progress
    delay, seen = rng.uniform(0.0, 8.0), []

    def saving() -> bool:  # busy polling: a save takes milliseconds
        return _stamp(tmp) not in (None, stale)

    def random_moment() -> bool:  # `delay` seconds after the process took the run folder
        if not seen and lock.exists() and lock.read_text():
            seen.append(time.monotonic())
        return bool(seen) and time.monotonic() - seen[0] >= delay

    ready = {"mid-save": saving, "after-metrics-line": lambda: _metrics_count(run_dir) > before,
             "random": random_moment}[mode]
    if not _kill_when(_start(config), ready):
        return None
    return f"{mode}{f' {delay:.1f}s' if mode == 'random' else ''}{' (during a save)' if saving() else ''}"


def _metrics(run_dir: Path) -> list[dict]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for line in lines:
        line.pop("elapsed_s")
    return lines


def _assert_same_run(straight: Path, killed: Path) -> None:
    for folder in ("last", "best"):
        a, b = load_file(str(straight / folder / "trainable.safetensors")), load_file(
            str(killed / folder / "trainable.safetensors"))
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_allclose(a[name].numpy(), b[name].numpy(), atol=1e-6, err_msg=f"{folder}/{name}")
    assert _metrics(straight) == _metrics(killed)
    assert (straight / "val_predictions.csv").read_text() == (killed / "val_predictions.csv").read_text()
    assert not (killed / "mmtune.lock").exists()


@pytest.mark.slow
def test_twenty_random_sigkills_then_resume_equal_an_uninterrupted_run(demo_small, tiny_models, tmp_path):
    rng = random.Random(9)
    log: list[str] = []
    for name, settings in SETTINGS.items():
        straight = tmp_path / f"straight-{name}"
        config = write_config(fusion_config(demo_small, tiny_models, straight, **settings), tmp_path / f"{name}.yaml")
        assert run_mmtune("train", config, timeout=600).returncode == 0
        attempt = 0
        while sum(line.startswith(f"killed-{name}-") for line in log) < KILLS_PER_SETTING:
            run_dir = tmp_path / f"killed-{name}-{attempt}"
            config = write_config(fusion_config(demo_small, tiny_models, run_dir, **settings),
                                  tmp_path / f"{name}-{attempt}.yaml")
            for _ in range(KILLS_PER_RUN):
                hit = _one_kill(config, run_dir, rng.choice(["mid-save", "after-metrics-line", "random"]), rng)
                if hit is None:  # it finished first
                    break
                log.append(f"{run_dir.name}: {hit}")
            final = run_mmtune("train", config, "--resume", timeout=600)
            assert final.returncode == 0, final.stderr
            _assert_same_run(straight, run_dir)
            attempt += 1
    print("\n".join(log))
    assert len(log) >= 2 * KILLS_PER_SETTING
    assert sum("during a save" in line for line in log) >= 3, log
