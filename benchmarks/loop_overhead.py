"""Training-loop overhead: mmtune's TrainingLoop against a plain PyTorch loop, side by side in one process.

Target (issue): training samples/s of mmtune's loop >= 0.95 x a plain PyTorch loop on the same tiny
fusion model, data and batches.

    HF_HUB_OFFLINE=1 python benchmarks/loop_overhead.py [--posts 512] [--val-posts 64] [--batch-size 32]
        [--rounds 7] [--epochs-trainable 2] [--epochs-frozen 20] [--threads N] [--work DIR]

Two configurations of the `fusion` kind on tiny random towers (`make_tiny`: bert text, vit image, 32 px):
    trainable  freeze preset none, feature_cache off: every step tokenizes, decodes and normalises the
               images, and runs forward + backward through both towers (the loop does real work);
    frozen     freeze preset all, feature_cache on: the towers' features are read from the cache at
               `prepare`, each step trains the fusion head only (where per-step overhead matters most).

Each configuration builds its two classifiers (one per loop) and `prepare`s the examples once. Each of
--rounds rounds starts both loops from the same initial weights and seed, then alternates their epochs
(AB, BA, AB, ...: the order swaps every epoch, so both see the same machine load):
    A  mmtune: `TrainingLoop.setup` (untimed), then for each epoch `loop._train_epoch` (timed: the
       training steps, i.e. prepared loader + accumulate + backward + clip + optimizer + scheduler + tqdm
       + budget/signal checks) followed by `loop._end_of_epoch` (timed apart: evaluation on --val-posts
       posts + writing last/ and best/), exactly what `TrainingLoop.train` runs per epoch;
    B  plain: a torch DataLoader with the same dataset, collate (`BatchCollator`), batch size and
       sampler order (`EpochSampler`, same seed and epochs), AdamW over the same parameter groups
       (learning rates, weight decay), torch cross-entropy, zero_grad / backward /
       clip_grad_norm_(max_grad_norm) / step, `loss.item()` per step, and with train.ema_decay (on by default)
       the same weight average a plain script keeps (torch.optim.swa_utils.get_ema_multi_avg_fn over the
       trainable parameters after each step); no scheduler, no evaluation.
The comparison (ratio) is training-step samples/s: medians over the rounds of mmtune / plain (also the
median of the per-round ratios, and the ratio of CPU times). Run it alone: a second torch process on
2 cores oversubscribes the threads and slows both by an order of magnitude. The
end-of-epoch cost is reported as well (the loop's samples/s including it), but it is evaluation and
checkpointing, which a plain loop would also need and does here not do.

The last line is JSON with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from accelerate.utils import set_seed
from torch.optim.swa_utils import get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from mmtune.config import Config, build
from mmtune.data.checks import load_posts
from mmtune.data.labels import infer_labels
from mmtune.demo import make_demo_data
from mmtune.recipes.train import build_model
from mmtune.testing.tiny import make_tiny
from mmtune.training.budget import StopSignals
from mmtune.training.inference import BatchCollator, _Indexed
from mmtune.training.loop import TrainingLoop, make_accelerator
from mmtune.training.sampler import EpochSampler

SEED = 3
_NO_DECAY = ("bias", "norm", "embedding")


def make_config(kind: str, work: Path, demo: Any, models: dict[str, Path], batch_size: int, epochs: int) -> Config:
    fusion: dict[str, Any] = {"text_encoder": str(models["bert"]), "image_encoder": str(models["vit"]),
                              "max_length": 24}
    train: dict[str, Any] = {"epochs": epochs, "batch_size": batch_size, "lr": 1e-3, "head_lr": 3e-3, "loss": "ce",
                             "max_grad_norm": 1.0, "num_workers": 0, "cache_dir": str(work / "cache")}
    if kind == "trainable":
        fusion |= {"projection_dim": 32, "hidden_size": 64}
        freeze = "none"
        train |= {"feature_cache": False}
    else:  # head-only training on cached frozen towers, with the demo's head sizes
        fusion |= {"projection_dim": 256, "hidden_size": 256}
        freeze = "all"
        train |= {"feature_cache": True}
    raw = {"name": f"loop-{kind}", "output_dir": str(work / f"run-{kind}"), "seed": SEED,
           "data": {"train": str(demo.train), "train_images": str(demo.train_images), "image": {"size": 32}},
           "model": {"kind": "fusion", "fusion": fusion, "freeze": {"preset": freeze}}, "train": train}
    return build(Config, raw, source="benchmark")


class Setup:
    """One configuration: two classifiers built once with the same initial weights (one for each loop, so that
    their epochs can alternate), the prepared examples (shared) and the initial weights."""

    def __init__(self, cfg: Config, posts: list, n_train: int) -> None:
        labels = infer_labels(p.label for p in posts)
        self.cfg = replace(cfg, data=replace(cfg.data, labels=labels))
        set_seed(SEED)
        self.classifier = build_model(self.cfg, labels)
        self.train = self.classifier.prepare(posts[:n_train], train=True)
        self.val = self.classifier.prepare(posts[n_train:], train=False)
        self.initial = {k: v.detach().clone() for k, v in self.classifier.state_dict().items()}
        self.plain_model = build_model(self.cfg, labels)
        self.n_trainable = sum(p.numel() for p in self.classifier.parameters() if p.requires_grad)

    def reset(self) -> None:
        self.classifier.load_state_dict(self.initial)
        self.plain_model.load_state_dict(self.initial)
        set_seed(SEED)


class MmtuneRun:
    """mmtune's loop, set up untimed; `epoch()` times what `TrainingLoop.train` runs for one epoch."""

    def __init__(self, setup: Setup, run_dir: Path) -> None:
        cfg = setup.cfg
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        self.run_dir = run_dir
        self.loop = TrainingLoop(cfg, setup.classifier, make_accelerator(cfg, run_dir), run_dir, "benchmark")
        self.loop.setup(setup.train, setup.val, resume=False)
        self.signals = StopSignals()  # not entered: installing signal handlers is not part of the steps

    def epoch(self) -> dict[str, float]:
        started, cpu_started = time.perf_counter(), time.process_time()
        stopped = self.loop._train_epoch(self.signals)
        train_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
        assert stopped is None, stopped
        started = time.perf_counter()
        self.loop._end_of_epoch()  # evaluation, best/ on improvement, last/
        return {"train_s": train_s, "cpu_s": cpu_s, "end_of_epoch_s": time.perf_counter() - started}

    def close(self) -> None:
        shutil.rmtree(self.run_dir, ignore_errors=True)


def plain_param_groups(model: torch.nn.Module, cfg: Config) -> list[dict[str, Any]]:
    """AdamW groups as a plain script would write them: head/backbone learning rate, no decay on biases/norms."""
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        lr = cfg.train.lr if name.startswith(("text_tower.", "image_tower.")) else cfg.train.head_lr
        no_decay = param.ndim < 2 or any(part in name.lower() for part in _NO_DECAY)
        groups.setdefault((lr, 0.0 if no_decay else cfg.train.weight_decay), []).append(param)
    return [{"params": params, "lr": lr, "weight_decay": wd} for (lr, wd), params in groups.items()]


def plain_loader(setup: Setup) -> tuple[DataLoader, EpochSampler]:
    cfg = setup.cfg
    sampler = EpochSampler(len(setup.train), seed=cfg.seed)
    loader = DataLoader(_Indexed(setup.train), batch_size=cfg.train.batch_size, sampler=sampler,
                        collate_fn=BatchCollator(setup.plain_model, True), num_workers=0,
                        generator=torch.Generator().manual_seed(cfg.seed))
    return loader, sampler


class PlainRun:
    """The plain PyTorch loop on the second classifier: same data, batches, optimizer groups, loss, clipping."""

    def __init__(self, setup: Setup) -> None:
        self.cfg, self.model = setup.cfg, setup.plain_model
        self.loader, self.sampler = plain_loader(setup)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(plain_param_groups(self.model, self.cfg))
        decay = self.cfg.train.ema_decay
        self.average = get_ema_multi_avg_fn(decay) if decay else None
        self.shadow = [p.detach().clone() for p in self.params]
        self.epochs_done = 0
        self.losses: list[float] = []

    def epoch(self) -> dict[str, float]:
        model, optimizer, max_norm = self.model, self.optimizer, self.cfg.train.max_grad_norm
        started, cpu_started = time.perf_counter(), time.process_time()
        self.sampler.set_epoch(self.epochs_done)
        model.train()
        for batch in self.loader:
            batch.pop("index")
            target = batch.pop("target")
            loss = F.cross_entropy(model(batch).float(), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.params, max_norm)
            optimizer.step()
            if self.average is not None:
                self.average(self.shadow, self.params, None)
            self.losses.append(loss.item())
        self.epochs_done += 1
        return {"train_s": time.perf_counter() - started, "cpu_s": time.process_time() - cpu_started}


def check_same_order(setup: Setup) -> None:
    """The two loops see the same batches in the same order (checked untimed, on epochs 0 and 1)."""
    run = MmtuneRun(setup, Path(setup.cfg.output_dir) / "order-check")
    loader, sampler = plain_loader(setup)
    for epoch in (0, 1):
        run.loop.train_loader.set_epoch(epoch)
        sampler.set_epoch(epoch)
        ours = torch.cat([b["index"] for b in run.loop.train_loader])
        theirs = torch.cat([b["index"] for b in loader])
        assert torch.equal(ours, theirs), f"epoch {epoch}: the loops see different sample orders"
    run.close()


def run_round(setup: Setup, index: int, epochs: int) -> dict[str, dict[str, float]]:
    """One round: both loops from the initial weights, their epochs alternating (the order swaps every epoch)."""
    setup.reset()
    runs = {"mmtune": MmtuneRun(setup, Path(setup.cfg.output_dir) / f"round-{index}"), "plain": PlainRun(setup)}
    totals = {name: {"train_s": 0.0, "cpu_s": 0.0, "end_of_epoch_s": 0.0} for name in runs}
    for epoch in range(epochs):
        for name in (("plain", "mmtune") if (index + epoch) % 2 == 0 else ("mmtune", "plain")):
            for key, value in runs[name].epoch().items():
                totals[name][key] += value
    runs["mmtune"].close()
    samples = len(setup.train) * epochs
    for total in totals.values():
        total["samples"] = samples
        total["samples_per_s"] = samples / total["train_s"]
    return totals


def measure(setup: Setup, rounds: int) -> dict[str, Any]:
    cfg = setup.cfg
    check_same_order(setup)
    run_round(setup, -1, 1)  # warm-up (allocator, lazy imports, first reads of the images), untimed
    results = []
    for index in range(rounds):
        result = run_round(setup, index, cfg.train.epochs)
        results.append(result)
        plain, ours = result["plain"], result["mmtune"]
        print(f"  round {index + 1}: plain {plain['samples_per_s']:8.1f}  mmtune {ours['samples_per_s']:8.1f} "
              f"samples/s (ratio {plain['train_s'] / ours['train_s']:.3f}, "
              f"CPU-time ratio {plain['cpu_s'] / ours['cpu_s']:.3f}; load {os.getloadavg()[0]:.2f})", flush=True)

    def median(name: str, key: str) -> float:
        return float(np.median([r[name][key] for r in results]))

    plain, ours = median("plain", "samples_per_s"), median("mmtune", "samples_per_s")
    paired = [r["plain"]["train_s"] / r["mmtune"]["train_s"] for r in results]
    full = [r["mmtune"]["samples"] / (r["mmtune"]["train_s"] + r["mmtune"]["end_of_epoch_s"]) for r in results]
    batch = cfg.train.batch_size
    return {
        "plain_samples_per_s": round(plain, 1), "mmtune_samples_per_s": round(ours, 1), "ratio": round(ours / plain, 3),
        "ratio_paired_median": round(float(np.median(paired)), 3),
        "ratio_paired_min_max": [round(min(paired), 3), round(max(paired), 3)],
        "ratio_cpu_time": round(median("plain", "cpu_s") / median("mmtune", "cpu_s"), 3),
        "plain_ms_per_step": round(1000 * batch / plain, 2),
        "overhead_ms_per_step": round(1000 * batch * (1 / ours - 1 / plain), 2),
        "steps_per_epoch": -(-len(setup.train) // batch),
        "mmtune_with_eval_and_save_samples_per_s": round(float(np.median(full)), 1),
        "end_of_epoch_s": round(median("mmtune", "end_of_epoch_s") / cfg.train.epochs, 3),
        "plain_runs": [round(r["plain"]["samples_per_s"], 1) for r in results],
        "mmtune_runs": [round(r["mmtune"]["samples_per_s"], 1) for r in results],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=512, help="training posts")
    parser.add_argument("--val-posts", type=int, default=64, help="validation posts (end-of-epoch evaluation)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7, help="ABAB rounds per configuration; medians reported")
    parser.add_argument("--epochs-trainable", type=int, default=2, help="epochs per timed run, trainable towers")
    parser.add_argument("--epochs-frozen", type=int, default=20, help="epochs per timed run, cached frozen towers")
    parser.add_argument("--configs", nargs="+", default=["trainable", "frozen"], choices=["trainable", "frozen"])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch.set_num_threads (1: a loaded 2-core machine slows torch's thread pool ~7x)")
    parser.add_argument("--work", type=Path, default=None, help="keep data/models here (default: a temp dir)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="mmtune-loop-"))
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    demo = make_demo_data(work / "demo", n_train=args.posts + args.val_posts, n_test=8, seed=0, image_size=48,
                          inject_faults=False)
    models = {family: make_tiny(family, work / family) for family in ("bert", "vit")}
    results: dict[str, Any] = {}
    try:
        for kind in args.configs:
            epochs = args.epochs_trainable if kind == "trainable" else args.epochs_frozen
            cfg = make_config(kind, work, demo, models, args.batch_size, epochs)
            posts = load_posts(demo.train, demo.train_images, cfg.data, require_label=True).posts
            assert len(posts) == args.posts + args.val_posts, len(posts)
            setup = Setup(cfg, posts, args.posts)
            print(f"{kind}: {len(setup.train)} training posts x {epochs} epochs per run, batch {args.batch_size}, "
                  f"{setup.n_trainable:,} trainable parameters, {args.threads} threads", flush=True)
            results[kind] = {"epochs_per_run": epochs, "trainable_params": setup.n_trainable,
                             **measure(setup, args.rounds)}
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    print()
    print(f"{'config':<10} {'plain/s':>9} {'mmtune/s':>9} {'ratio':>6} {'paired':>6} {'CPU':>6} {'plain ms/step':>13} "
          f"{'overhead ms/step':>16} {'w/ eval+save /s':>15} {'end-of-epoch s':>14}")
    for kind, r in results.items():
        print(f"{kind:<10} {r['plain_samples_per_s']:>9.1f} {r['mmtune_samples_per_s']:>9.1f} {r['ratio']:>6.3f} "
              f"{r['ratio_paired_median']:>6.3f} {r['ratio_cpu_time']:>6.3f} {r['plain_ms_per_step']:>13.2f} "
              f"{r['overhead_ms_per_step']:>16.2f} {r['mmtune_with_eval_and_save_samples_per_s']:>15.1f} "
              f"{r['end_of_epoch_s']:>14.3f}")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min); {os.cpu_count()} CPUs")
    print(json.dumps({
        "config": {"posts": args.posts, "val_posts": args.val_posts, "batch_size": args.batch_size,
                   "rounds": args.rounds, "threads": args.threads, "towers": "tiny bert + tiny vit (32 px)"},
        **results,
        "load_average": [round(load_before[0], 2), round(load_after[0], 2)],
    }))


if __name__ == "__main__":
    main()
