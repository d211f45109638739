"""Does `train.time_budget` hold for the whole process (issue 9, item 22)?

Runs the real `mmtune train` of the demo config (frozen PyPI encoders, feature cache, fusion head) under a
budget, with a cold feature cache (the encoding pass must stop inside the budget) and a warm one, and prints
each process's wall time (start to exit, measured outside it) and its ratio to the budget. Target: every
ratio <= 1.0 plus a small slack for the interpreter's exit.

    python benchmarks/time_budget.py [--budget 20] [--repeats 3] [--n-train 400]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.resources import as_file, files
from pathlib import Path

from mmtune.demo import make_demo_data


def run_once(config: Path, root: Path, demo: object, budget: float | None, cold: bool) -> tuple[float, str]:
    cache, run_dir = root / "cache", root / "run"
    if cold:
        shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(run_dir, ignore_errors=True)
    # Early stopping off: the warm runs must meet the budget, not end before it.
    limits = ([f"train.time_budget={budget}s", "train.epochs=1000", "train.early_stopping_patience=0"] if budget
              else ["train.epochs=1"])
    command = [sys.executable, "-m", "mmtune", "train", str(config), f"output_dir={run_dir}",
               f"data.train={demo.train}", f"data.train_images={demo.train_images}", f"data.test={demo.test}",
               f"data.test_images={demo.test_images}", f"train.cache_dir={cache}", *limits]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"mmtune train failed (exit {result.returncode}):\n{result.stderr[-2000:]}")
    last = next((line for line in result.stdout.splitlines() if line.startswith(("stopped", "done"))), "")
    return wall, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=20.0, help="train.time_budget in seconds")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mmtune-budget-") as tmp:
        root = Path(tmp)
        demo = make_demo_data(root / "data", n_train=args.n_train, n_test=args.n_train // 4, seed=0)
        with as_file(files("mmtune") / "resources" / "demo.yaml") as config:
            for mode in ("cold", "warm"):
                if mode == "warm":
                    run_once(config, root, demo, None, cold=False)  # fills the cache: the warm runs only train
                walls = []
                for _ in range(args.repeats):
                    wall, last = run_once(config, root, demo, args.budget, cold=mode == "cold")
                    walls.append(wall)
                    print(f"{mode:4s} cache  wall {wall:6.1f} s  ratio {wall / args.budget:.2f}  ({last[:70]})")
                median = statistics.median(walls)
                print(f"{mode:4s} cache  median wall {median:.1f} s for a {args.budget:.0f} s budget: "
                      f"ratio {median / args.budget:.2f} (max {max(walls) / args.budget:.2f})")


if __name__ == "__main__":
    main()
