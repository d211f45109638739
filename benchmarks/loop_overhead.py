"""Training-loop overhead: mmtune's TrainingLoop against a plain PyTorch loop, side by side in one process.

Target (issue): training samples/s of mmtune's loop >= 0.95 x a plain PyTorch loop on the same tiny
fusion model, data and batches.

    HF_HUB_OFFLINE=1 python benchmarks/loop_overhead.py [--posts 512] [--val-posts 64] [--batch-size 32]
        [--rounds 5] [--epochs-trainable 2] [--epochs-frozen 20] [--threads N] [--work DIR]

Two configurations of the `fusion` kind on tiny random towers (`make_tiny`: bert text, vit image, 32 px):
    trainable  freeze preset none, feature_cache off: every step tokenizes, decodes and normalises the
               images, and runs forward + backward through both towers (the loop does real work);
    frozen     freeze preset all, feature_cache on: the towers' features are read from the cache at
               `prepare`, each step trains the fusion head only (where per-step overhead matters most).

Each configuration builds its classifier and `prepare`s the examples once. Then, for --rounds rounds,
A and B alternate (ABAB...), each starting from a copy of the same initial weights and the same seed:
    A  mmtune: `TrainingLoop.setup` (untimed), then for each epoch `loop._train_epoch` (timed: the
       training steps, i.e. prepared loader + accumulate + backward + clip + optimizer + scheduler + tqdm
       + budget/signal checks) followed by `loop._end_of_epoch` (timed apart: evaluation on --val-posts
       posts + writing last/ and best/), exactly what `TrainingLoop.train` runs per epoch;
    B  plain: a torch DataLoader with the same dataset, collate (`BatchCollator`), batch size and
       sampler order (`EpochSampler`, same seed and epochs), AdamW over the same parameter groups
       (learning rates, weight decay), torch cross-entropy, zero_grad / backward /
       clip_grad_norm_(max_grad_norm) / step, `loss.item()` per step; no scheduler, no evaluation.
The comparison (ratio) is training-step samples/s: medians over the rounds of mmtune / plain. The
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
from torch.utils.data import DataLoader

from mmtune.config import Config, build
from mmtune.data.checks import load_posts
from mmtune.data.labels import infer_labels
from mmtune.data.synthetic import make_demo_data
from mmtune.models.base import build_classifier
from mmtune.models.tiny import make_tiny
from mmtune.training.budget import StopSignals
from mmtune.training.loop import BatchCollator, TrainingLoop, _Indexed, make_accelerator
from mmtune.training.sampler import EpochSampler

SEED = 3
_NO_DECAY = ("bias", "norm", "embedding")


def make_config(kind: str, work: Path, demo: Any, models: dict[str, Path], batch_size: int, epochs: int) -> Config:
    model: dict[str, Any] = {"kind": "fusion", "text_encoder": str(models["bert"]),
                             "image_encoder": str(models["vit"]), "max_length": 24}
    train: dict[str, Any] = {"epochs": epochs, "batch_size": batch_size, "lr": 1e-3, "head_lr": 3e-3, "loss": "ce",
                             "max_grad_norm": 1.0, "num_workers": 0, "cache_dir": str(work / "cache")}
    if kind == "trainable":
        model |= {"projection_dim": 32, "hidden_size": 64, "freeze": {"preset": "none"}}
        train |= {"feature_cache": False}
    else:  # head-only training on cached frozen towers, with the demo's head sizes
        model |= {"projection_dim": 256, "hidden_size": 256, "freeze": {"preset": "all"}}
        train |= {"feature_cache": True}
    raw = {"name": f"loop-{kind}", "output_dir": str(work / f"run-{kind}"), "seed": SEED,
           "data": {"train": str(demo.train), "train_images": str(demo.train_images), "image": {"size": 32}},
           "model": model, "train": train}
    return build(Config, raw, source="benchmark")


class Setup:
    """One configuration: the classifier (built once), its prepared examples and initial weights."""

    def __init__(self, cfg: Config, posts: list, n_train: int) -> None:
        labels = infer_labels(p.label for p in posts)
        self.cfg = replace(cfg, data=replace(cfg.data, labels=labels))
        set_seed(SEED)
        self.classifier = build_classifier(self.cfg, labels)
        self.train = self.classifier.prepare(posts[:n_train], train=True)
        self.val = self.classifier.prepare(posts[n_train:], train=False)
        self.initial = {k: v.detach().clone() for k, v in self.classifier.state_dict().items()}
        self.n_trainable = sum(p.numel() for p in self.classifier.parameters() if p.requires_grad)

    def reset(self) -> None:
        self.classifier.load_state_dict(self.initial)
        set_seed(SEED)


def run_mmtune(setup: Setup, round_index: int) -> dict[str, float]:
    setup.reset()
    cfg = setup.cfg
    run_dir = Path(cfg.output_dir) / f"round-{round_index}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    loop = TrainingLoop(cfg, setup.classifier, make_accelerator(cfg, run_dir), run_dir, "benchmark")
    loop.setup(setup.train, setup.val, resume=False)
    signals = StopSignals()  # not entered: the signal handlers are not part of the steps
    train_s = end_s = 0.0
    for _ in range(cfg.train.epochs):
        started = time.perf_counter()
        stopped = loop._train_epoch(signals)
        train_s += time.perf_counter() - started
        assert stopped is None, stopped
        started = time.perf_counter()
        loop._end_of_epoch()
        end_s += time.perf_counter() - started
    samples = len(setup.train) * cfg.train.epochs
    shutil.rmtree(run_dir, ignore_errors=True)
    return {"train_s": train_s, "end_of_epoch_s": end_s, "samples": samples, "steps": loop.state.global_step}


def plain_param_groups(model: torch.nn.Module, cfg: Config) -> list[dict[str, Any]]:
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
                        collate_fn=BatchCollator(setup.classifier, True), num_workers=0,
                        generator=torch.Generator().manual_seed(cfg.seed))
    return loader, sampler


def run_plain(setup: Setup) -> dict[str, float]:
    setup.reset()
    cfg, model = setup.cfg, setup.classifier
    loader, sampler = plain_loader(setup)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(plain_param_groups(model, cfg))
    losses: list[float] = []
    steps = 0
    started = time.perf_counter()
    for epoch in range(cfg.train.epochs):
        sampler.set_epoch(epoch)
        model.train()
        for batch in loader:
            batch.pop("index")
            target = batch.pop("target")
            loss = F.cross_entropy(model(batch).float(), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.train.max_grad_norm)
            optimizer.step()
            losses.append(loss.item())
            steps += 1
    train_s = time.perf_counter() - started
    return {"train_s": train_s, "samples": len(setup.train) * cfg.train.epochs, "steps": steps}


def check_same_order(setup: Setup) -> None:
    """The two loops see the same batches in the same order (checked untimed, on epochs 0 and 1)."""
    cfg = setup.cfg
    run_dir = Path(cfg.output_dir) / "order-check"
    run_dir.mkdir(parents=True, exist_ok=True)
    loop = TrainingLoop(cfg, setup.classifier, make_accelerator(cfg, run_dir), run_dir, "benchmark")
    loop.setup(setup.train, setup.val, resume=False)
    loader, sampler = plain_loader(setup)
    for epoch in (0, 1):
        loop.train_loader.set_epoch(epoch)
        sampler.set_epoch(epoch)
        ours = torch.cat([b["index"] for b in loop.train_loader])
        theirs = torch.cat([b["index"] for b in loader])
        assert torch.equal(ours, theirs), f"epoch {epoch}: the loops see different sample orders"
    shutil.rmtree(run_dir, ignore_errors=True)


def measure(setup: Setup, rounds: int) -> dict[str, Any]:
    check_same_order(setup)
    run_plain(setup)  # warm-up (allocator, lazy imports, first-touch of the images) for both, untimed
    run_mmtune(setup, -1)
    plain_rates, ours_rates, ours_full_rates, end_costs = [], [], [], []
    for index in range(rounds):
        order = (("plain", "mmtune") if index % 2 == 0 else ("mmtune", "plain"))
        for which in order:
            if which == "plain":
                result = run_plain(setup)
                plain_rates.append(result["samples"] / result["train_s"])
            else:
                result = run_mmtune(setup, index)
                ours_rates.append(result["samples"] / result["train_s"])
                ours_full_rates.append(result["samples"] / (result["train_s"] + result["end_of_epoch_s"]))
                end_costs.append(result["end_of_epoch_s"] / setup.cfg.train.epochs)
        print(f"  round {index + 1}: plain {plain_rates[-1]:8.1f}  mmtune {ours_rates[-1]:8.1f} samples/s  "
              f"(ratio {ours_rates[-1] / plain_rates[-1]:.3f}; load {os.getloadavg()[0]:.2f})", flush=True)
    plain, ours = float(np.median(plain_rates)), float(np.median(ours_rates))
    paired = [o / p for o, p in zip(ours_rates, plain_rates)]
    return {
        "plain_samples_per_s": round(plain, 1), "mmtune_samples_per_s": round(ours, 1), "ratio": round(ours / plain, 3),
        "ratio_paired_median": round(float(np.median(paired)), 3),
        "ratio_paired_min_max": [round(min(paired), 3), round(max(paired), 3)],
        "mmtune_with_eval_and_save_samples_per_s": round(float(np.median(ours_full_rates)), 1),
        "end_of_epoch_s": round(float(np.median(end_costs)), 3),
        "plain_runs": [round(r, 1) for r in plain_rates], "mmtune_runs": [round(r, 1) for r in ours_rates],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=512, help="training posts")
    parser.add_argument("--val-posts", type=int, default=64, help="validation posts (end-of-epoch evaluation)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5, help="ABAB rounds per configuration; medians reported")
    parser.add_argument("--epochs-trainable", type=int, default=2, help="epochs per timed run, trainable towers")
    parser.add_argument("--epochs-frozen", type=int, default=20, help="epochs per timed run, cached frozen towers")
    parser.add_argument("--configs", nargs="+", default=["trainable", "frozen"], choices=["trainable", "frozen"])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch.set_num_threads")
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
    print(f"{'config':<10} {'plain/s':>9} {'mmtune/s':>9} {'ratio':>6} {'paired':>6} {'w/ eval+save':>12} "
          f"{'end-of-epoch s':>14}")
    for kind, r in results.items():
        print(f"{kind:<10} {r['plain_samples_per_s']:>9.1f} {r['mmtune_samples_per_s']:>9.1f} {r['ratio']:>6.3f} "
              f"{r['ratio_paired_median']:>6.3f} {r['mmtune_with_eval_and_save_samples_per_s']:>12.1f} "
              f"{r['end_of_epoch_s']:>14.3f}")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min); {os.cpu_count()} CPUs")
    print(json.dumps({
        "config": {"posts": args.posts, "val_posts": args.val_posts, "batch_size": args.batch_size,
                   "rounds": args.rounds, "threads": args.threads, "towers": "tiny bert + tiny vit (32 px)"},
        **{kind: {k: v for k, v in r.items() if not k.endswith("_runs")} | {"plain_runs": r["plain_runs"],
                                                                           "mmtune_runs": r["mmtune_runs"]}
           for kind, r in results.items()},
        "load_average": [round(load_before[0], 2), round(load_after[0], 2)],
    }))


if __name__ == "__main__":
    main()
