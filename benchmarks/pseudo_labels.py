"""`mmtune cv` with and without cv.pseudo_label on demo sets with few labelled and many unlabelled posts: OOF
macro-F1 and held-out test macro-F1 (the demo's answer key) of the fold models' mean, per seed and as medians.

    PYTHONPATH=src python benchmarks/pseudo_labels.py --seeds 0 1 2 --n-train 200 --n-test 800 --out /tmp/pl

The demo config (frozen encoders, cached features, fusion head) with the demo cv's epochs and patience; the
encoders' features are computed once per data set (feature cache), so each cv costs its heads' training.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from mmtune.demo import make_demo_data
from mmtune.evaluation.predictions import read_gold_labels, read_predictions
from mmtune.recipes.cv import run_cv
from mmtune.recipes.demo import DEMO_CV_EPOCHS, DEMO_CV_PATIENCE, demo_config, held_out_score


def one_cv(demo, out: Path, folds: int, pseudo: str | None) -> dict[str, float]:
    overrides = [f"cv.folds={folds}", f"train.epochs={DEMO_CV_EPOCHS}",
                 f"train.early_stopping_patience={DEMO_CV_PATIENCE}", "train.log_with=[]"]
    if pseudo:
        overrides.append(f"cv.pseudo_label={pseudo}")
    started = time.monotonic()
    result = run_cv(demo_config(out, demo, overrides))
    test = held_out_score(read_predictions(out / "test.csv"), read_gold_labels(demo.test_gold))
    figures = {"oof_macro_f1": result.summary["oof"]["macro_f1"], "test_macro_f1": test["macro_f1"],
               "seconds": round(time.monotonic() - started, 1)}
    if result.pseudo_labels:
        figures["pseudo_added_mean"] = statistics.mean(f["added"] for f in result.pseudo_labels["folds"].values())
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-train", type=int, default=200)
    parser.add_argument("--n-test", type=int, default=800)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--pseudo", default="{threshold: 0.95, max_fraction: 0.3}")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        demo = make_demo_data(args.out / f"data-{seed}", n_train=args.n_train, n_test=args.n_test, seed=seed)
        plain = one_cv(demo, args.out / f"cv-{seed}", args.folds, None)
        pseudo = one_cv(demo, args.out / f"cv-pseudo-{seed}", args.folds, args.pseudo)
        rows.append({"seed": seed, "plain": plain, "pseudo": pseudo})
        print(json.dumps(rows[-1]), flush=True)
    for key in ("oof_macro_f1", "test_macro_f1"):
        plain = statistics.median(r["plain"][key] for r in rows)
        pseudo = statistics.median(r["pseudo"][key] for r in rows)
        print(f"median {key}: plain {plain:.4f}, pseudo-labels {pseudo:.4f} ({pseudo - plain:+.4f})")


if __name__ == "__main__":
    main()
