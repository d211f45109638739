"""Fixtures for training tests: small demo data and tiny models, built once per session."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mmtune.demo import make_demo_data
from mmtune.testing.tiny import make_tiny


@pytest.fixture(scope="session")
def demo_small(tmp_path_factory):
    return make_demo_data(tmp_path_factory.mktemp("demo"), n_train=96, n_test=24, seed=1, image_size=48,
                          inject_faults=False)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {family: make_tiny(family, root / family) for family in ("bert", "vit", "vilt", "clip")}


def fusion_config(demo, tiny_models, out: Path, **train) -> dict:
    """A fusion run on tiny trainable towers: every mechanism of the loop is exercised in seconds."""
    return {
        "name": "tiny", "output_dir": str(out), "seed": 3,
        "data": {"train": str(demo.train), "train_images": str(demo.train_images),
                 "test": str(demo.test), "test_images": str(demo.test_images), "image": {"size": 32}},
        "model": {"kind": "fusion", "fusion": {"text_encoder": str(tiny_models["bert"]),
                                               "image_encoder": str(tiny_models["vit"]), "projection_dim": 16,
                                               "hidden_size": 16, "max_length": 24}},
        "train": {"epochs": 2, "batch_size": 8, "lr": 1e-3, "head_lr": 3e-3, "feature_cache": False} | train,
        "cv": {"folds": 4},
    }


def write_config(config: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def run_mmtune(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "mmtune", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def _recorded_step(state: Path) -> int:
    """The optimizer steps last/ records, 0 while there is none. Why the except: the run swaps last/ as a whole
    folder, so the file can vanish (or be half read) between two looks; the next poll sees the new one."""
    try:
        return int(json.loads(state.read_text() or "{}").get("global_step", 0))
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def train_then_sigkill(config: Path, run_dir: Path, at_step: int, timeout: float = 240) -> None:
    """Run `mmtune train config` and SIGKILL it as soon as last/ records `at_step` optimizer steps."""
    process = subprocess.Popen([sys.executable, "-m", "mmtune", "train", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = run_dir / "last" / "trainer_state.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if _recorded_step(state) >= at_step:
            break
        time.sleep(0.005)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
