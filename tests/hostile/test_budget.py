"""Item 22: `train.time_budget` is the whole process's wall time, and the frozen towers' encoding pass keeps to it.

Start-up, data loading and feature extraction spend the budget as training does; when it runs out mid-extraction
the run stops cleanly (exit 0, "continue with ... --resume"), the features computed so far stay in the cache, and
`--resume` computes only the rest and finishes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import TrainerControl, TrainerState

import mmtune
from mmtune.cli import main
from mmtune.config import load_config
from mmtune.generative.trainer_setup import RunCallback
from mmtune.models import towers
from mmtune.models.feature_cache import ExtractionStopped, FeatureCache, extraction_budget, text_key
from mmtune.recipes.cv import run_cv
from mmtune.training import budget
from mmtune.training.budget import StopSignals, TimeBudget
from tests.hostile.conftest import fusion_config, run_mmtune, write_config

_CONTINUE = re.compile(r"stopped \(time_budget\); continue with: mmtune train \S+ --resume")


def _process_starts_at(monkeypatch: pytest.MonkeyPatch, moment: float) -> None:
    """In-process tests: the pytest process started long ago; the budget's clock starts at `moment` instead."""
    monkeypatch.setattr(budget, "process_started", lambda: moment)


# ---------------------------------------------------------------------------------------------- the clock


def test_the_budget_counts_from_the_process_start_not_from_the_import(tmp_path):
    # 1.5 s pass before mmtune is imported: a budget started at import (or at the loop) would not see them.
    code = ("import time; time.sleep(1.5)\n"
            "from mmtune.training.budget import TimeBudget\n"
            "print(TimeBudget(60).elapsed())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert 1.5 <= float(result.stdout) < 30


def test_without_proc_the_budget_counts_from_the_import_of_mmtune(monkeypatch):
    monkeypatch.setattr(budget, "_process_age", lambda: None)
    assert budget.process_started() == mmtune.IMPORTED_AT
    assert TimeBudget(10).started == mmtune.IMPORTED_AT


# ---------------------------------------------------------------------------------------------- extraction


def _slow_encoder(seconds: float, calls: list[int]):
    def compute(positions: list[int]) -> torch.Tensor:
        calls.append(len(positions))
        time.sleep(seconds)
        return torch.ones(len(positions), 3)

    return compute


def test_an_encoding_pass_stops_before_a_batch_that_would_end_past_the_budget(tmp_path):
    keys = [text_key(str(i)) for i in range(40)]
    calls: list[int] = []
    started = time.monotonic()
    store = FeatureCache(tmp_path).namespace("slow", {})
    with pytest.raises(ExtractionStopped) as stopped, extraction_budget(TimeBudget(1.0, started=started)):
        store.get_or_compute(keys, _slow_encoder(0.2, calls), batch_size=4, progress=False, desc="text features")
    elapsed = time.monotonic() - started
    # Stopped while two more batches (the reserve: twice the slowest) still fitted: never past the budget.
    assert elapsed < 1.0 and 2 <= len(calls) <= 4
    assert (stopped.value.done, stopped.value.total, stopped.value.folder) == (4 * len(calls), 40, store.folder)
    # What was computed is on disk: a new run's store has it and computes only the rest.
    again = FeatureCache(tmp_path).namespace("slow", {})
    assert len(again) == 4 * len(calls)
    rest: list[int] = []
    again.get_or_compute(keys, _slow_encoder(0.0, rest), batch_size=4, progress=False)
    assert sum(rest) == 40 - 4 * len(calls)


def test_a_first_small_batch_times_the_encoder_so_a_full_batch_never_runs_past_the_budget(tmp_path):
    keys = [text_key(str(i)) for i in range(64)]
    sizes: list[int] = []

    def per_item(positions: list[int]) -> torch.Tensor:  # 50 ms per item: a batch of 32 is 1.6 s
        sizes.append(len(positions))
        time.sleep(0.05 * len(positions))
        return torch.ones(len(positions), 3)

    started = time.monotonic()
    store = FeatureCache(tmp_path).namespace("slow", {})
    with pytest.raises(ExtractionStopped), extraction_budget(TimeBudget(1.0, started=started)):
        store.get_or_compute(keys, per_item, batch_size=32, progress=False)
    assert sizes == [4] and time.monotonic() - started < 1.0


def test_a_spent_budget_still_computes_one_batch_so_every_resume_moves_forward(tmp_path):
    keys = [text_key(str(i)) for i in range(12)]
    calls: list[int] = []
    store = FeatureCache(tmp_path).namespace("slow", {})
    with pytest.raises(ExtractionStopped), extraction_budget(TimeBudget(1.0, started=time.monotonic() - 5)):
        store.get_or_compute(keys[:2], _slow_encoder(0.0, calls), batch_size=4, progress=False)
        store.get_or_compute(keys, _slow_encoder(0.0, calls), batch_size=4, progress=False)
    assert calls == [2]  # one batch in the whole block, not one per pass
    # Outside a budget block (predict, or no train.time_budget) nothing stops.
    with extraction_budget(TimeBudget(None)):
        store.get_or_compute(keys, _slow_encoder(0.0, calls), batch_size=4, progress=False)
    store.get_or_compute([text_key("x")], _slow_encoder(0.0, calls), progress=False)
    assert calls == [2, 4, 4, 2, 1]


@pytest.fixture
def slow_text_tower(monkeypatch):
    """The frozen text tower's encoding pass takes 50 ms per post; returns the sizes of the batches it encoded."""
    encoded: list[int] = []
    original = towers.TextTower.features

    def features(self, texts):
        if len(texts) > 1:  # not the one-text probe of the output size at build time
            encoded.append(len(texts))
            time.sleep(0.05 * len(texts))
        return original(self, texts)

    monkeypatch.setattr(towers.TextTower, "features", features)
    return encoded


def _cached_keys(cache: Path, prefix: str) -> set[str]:
    keys: set[str] = set()
    for shard in cache.glob(f"{prefix}-*/shard-*.safetensors"):
        with safe_open(str(shard), framework="pt") as handle:
            keys |= set(json.loads(handle.metadata()["keys"]))
    return keys


def _frozen_config(demo, tiny, tmp_path, budget_text):
    config = fusion_config(demo, tiny, tmp_path / "run", epochs=2, feature_cache=True,
                           cache_dir=str(tmp_path / "cache"), time_budget=budget_text)
    config["model"]["freeze"] = {"preset": "all"}
    return write_config(config, tmp_path / "c.yaml")


def test_train_stops_mid_extraction_within_the_budget_and_resume_finishes(
        demo_small, tiny_models, tmp_path, monkeypatch, capsys, slow_text_tower):
    config = _frozen_config(demo_small, tiny_models, tmp_path, "6s")
    # 120 posts (72 train, 24 val, 24 test), about 107 distinct texts: 5.4 s, more than what the budget leaves.
    started = time.monotonic()
    _process_starts_at(monkeypatch, started)
    code = main(["train", str(config)])
    elapsed = time.monotonic() - started
    out = capsys.readouterr()
    assert code == 0 and _CONTINUE.search(" ".join(out.out.split())), out
    assert re.search(r"time budget 6s spent while computing (text|image) features", " ".join(out.err.split()))
    assert elapsed < 6.0 + 0.5, f"{elapsed:.1f} s for a 6 s budget"
    run_dir = tmp_path / "run"
    assert not (run_dir / "last").exists() and not (run_dir / "test_predictions.csv").exists()
    done = sum(slow_text_tower)
    assert 0 < done < 120 and len(_cached_keys(tmp_path / "cache", "bert")) == done  # kept on disk

    _process_starts_at(monkeypatch, time.monotonic())
    slow_text_tower.clear()
    assert main(["train", str(config), "--resume", "train.time_budget=null"]) == 0
    assert "done (finished)" in capsys.readouterr().out
    # The cached ones are not computed again: every text was encoded once over the two runs.
    assert sum(slow_text_tower) > 0 and done + sum(slow_text_tower) == len(_cached_keys(tmp_path / "cache", "bert"))
    assert json.loads((run_dir / "last" / "trainer_state.json").read_text())["finished"]
    assert len((run_dir / "test_predictions.csv").read_text().splitlines()) == 1 + 24


def test_a_cv_counts_its_shared_budget_from_the_process_start(demo_small, tiny_models, tmp_path, monkeypatch):
    config = fusion_config(demo_small, tiny_models, tmp_path / "cv", epochs=1, time_budget="1h")
    config["cv"] = {"folds": 3}
    cfg = load_config(write_config(config, tmp_path / "cv.yaml"))
    _process_starts_at(monkeypatch, time.monotonic() - 3601)  # start-up and earlier work spent the hour
    result = run_cv(cfg)
    assert result.stopped == {0: "time_budget"} and not (tmp_path / "cv" / "fold-0").exists()


def test_api_calls_count_their_budget_from_the_call_not_from_the_kernel(demo_small, tiny_models, tmp_path,
                                                                          monkeypatch):
    """A notebook kernel started hours ago: api.cv still gets its whole budget, and every fold shares it."""
    from mmtune import api

    config = fusion_config(demo_small, tiny_models, tmp_path / "cv", epochs=1, time_budget="1h")
    config["cv"] = {"folds": 3, "only": [0]}
    cfg = load_config(write_config(config, tmp_path / "cv.yaml"))
    _process_starts_at(monkeypatch, time.monotonic() - 3601)
    result = api.cv(cfg)
    assert result.stopped == {} and result.trained == [0]
    with budget.budget_clock(started=123.0):
        assert TimeBudget(10).started == 123.0
        with budget.budget_clock(started=456.0):
            assert TimeBudget(10).started == 456.0
        assert TimeBudget(10).started == 123.0
    assert budget.budget_started() == budget.process_started()


def test_the_generative_trainers_count_their_budget_from_the_process_start(tmp_path, monkeypatch):
    _process_starts_at(monkeypatch, time.monotonic() - 3601)  # the model and data loading spent the hour
    callback = RunCallback(load_config(None, ["train.time_budget=1h"]), tmp_path, StopSignals())
    state, control = TrainerState(max_steps=10), TrainerControl()
    callback.on_step_begin(None, state, control)
    state.global_step += 1
    callback.on_step_end(None, state, control)
    assert control.should_training_stop and control.should_save and callback.stopped == "time_budget"


# ---------------------------------------------------------------------------------------------- the whole command


_SLOW_MODEL = '''import time

from transformers import {base}


class Slow{base}({base}):
    """A frozen tower that takes {seconds} s per input: a large encoder on a slow machine."""

    def forward(self, **inputs):
        time.sleep({seconds} * next(value for value in inputs.values() if value is not None).shape[0])
        return super().forward(**inputs)
'''


def _slow_copy(folder: Path, out: Path, base: str, seconds: float) -> Path:
    """A copy of a tiny model folder whose AutoModel class sleeps in forward (loaded with trust_remote_code)."""
    shutil.copytree(folder, out)
    (out / "modeling_slow.py").write_text(_SLOW_MODEL.format(base=base, seconds=seconds), encoding="utf-8")
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    config["auto_map"] = {"AutoModel": f"modeling_slow.Slow{base}"}
    (out / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return out


@pytest.mark.slow
def test_the_command_with_a_cold_cache_ends_within_its_budget_and_resume_finishes(demo_small, tiny_models, tmp_path,
                                                                                 monkeypatch):
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))  # where transformers copies modeling_slow.py
    budget_s, tolerance_s = 30, 3
    config = fusion_config(demo_small, tiny_models, tmp_path / "run", epochs=2, feature_cache=True,
                           cache_dir=str(tmp_path / "cache"), time_budget=f"{budget_s}s")
    # About 225 distinct texts and images at 0.15 s each: 34 s of encoding after the start-up, past a 30 s budget.
    config["model"]["fusion"] |= {
        "text_encoder": str(_slow_copy(tiny_models["bert"], tmp_path / "bert", "BertModel", 0.15)),
        "image_encoder": str(_slow_copy(tiny_models["vit"], tmp_path / "vit", "ViTModel", 0.15))}
    config["model"] |= {"trust_remote_code": True, "freeze": {"preset": "all"}}
    path = write_config(config, tmp_path / "c.yaml")
    started = time.monotonic()
    result = run_mmtune("train", path, timeout=300)
    elapsed = time.monotonic() - started
    assert result.returncode == 0 and _CONTINUE.search(" ".join(result.stdout.split())), result.stderr[-3000:]
    assert "spent while computing" in result.stderr
    assert elapsed < budget_s + tolerance_s, f"{elapsed:.1f} s for a {budget_s} s budget"
    assert list((tmp_path / "cache").glob("*/shard-*.safetensors"))

    resumed = run_mmtune("train", path, "--resume", "train.time_budget=null", timeout=300)
    assert resumed.returncode == 0 and "done (finished)" in resumed.stdout, resumed.stderr[-3000:]
    computing = [int(n) for n in re.findall(r"computing (\d+) of", resumed.stderr)]
    assert sum(computing) <= 240 - 4  # what the budgeted run encoded (a batch at least) is read from the cache
    assert (tmp_path / "run" / "test_predictions.csv").exists()
