"""The 5-fold calibrated ensemble against the best single fold, on the held-out demo test split (macro-F1).

Runs what `mmtune demo` runs after its training: the demo config (frozen PyPI encoders, cached
features, a fusion MLP head) in 5-fold CV, the mean of the 5 fold models on the test split with the
macro-F1 calibration fitted on the OOF predictions. The best single fold is the one with the best
validation macro-F1 (chosen without looking at the test split), as a user would pick it.

    HF_HUB_OFFLINE=1 python benchmarks/cv_ensemble.py [--data-seeds 0 1 2] [--work /tmp/cv-bench]
"""

from __future__ import annotations

import argparse
import time
from importlib.resources import as_file, files
from pathlib import Path

from mmtune.config import load_config
from mmtune.demo import make_demo_data
from mmtune.recipes.demo import DEMO_CV_EPOCHS, cv_workflow


def one_round(work: Path, data_seed: int, n_train: int, n_test: int, epochs: int) -> dict:
    demo = make_demo_data(work / f"data-{data_seed}", n_train=n_train, n_test=n_test, seed=data_seed)
    overrides = [f"data.train={demo.train}", f"data.train_images={demo.train_images}", f"data.test={demo.test}",
                 f"data.test_images={demo.test_images}"]
    with as_file(files("mmtune") / "resources" / "demo.yaml") as path:
        cfg = load_config(path, overrides)
    started = time.perf_counter()
    figures = cv_workflow(cfg, demo.test_gold, work / f"cv-{data_seed}", epochs=epochs)
    figures["seconds"] = time.perf_counter() - started
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/mmtune-cv-bench"))
    parser.add_argument("--data-seeds", type=int, nargs="+", default=[0], help="demo data seeds (0 = the demo's)")
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-test", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=DEMO_CV_EPOCHS, help="most epochs per fold (the demo's)")
    args = parser.parse_args()
    print("data seed | best fold (val) | best single fold test macro-F1 | mean of folds | calibrated ensemble | "
          "ensemble - best fold | nested-CV calibration gain (OOF) | seconds")
    for seed in args.data_seeds:
        f = one_round(args.work, seed, args.n_train, args.n_test, args.epochs)
        best, mean, calibrated = (f[k]["macro_f1"] for k in ("best_fold_test", "mean_test", "calibrated_test"))
        print(f"{seed} | {f['best_fold']} | {best:.4f} | {mean:.4f} | {calibrated:.4f} | {calibrated - best:+.4f} | "
              f"{f['calibration']['nested_cv']['gain']:+.4f} | {f['seconds']:.0f}", flush=True)


if __name__ == "__main__":
    main()
