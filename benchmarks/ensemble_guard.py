"""`mmtune ensemble --method auto` against the best single input on the held-out demo test split (macro-F1).

Six 5-fold cvs of the demo config with perturbed settings (fewer epochs, lower learning rates, a narrow head,
plain cross-entropy: inputs of mixed quality) share one folds file and the feature cache. Each of `--draws`
random draws ensembles 2 to 4 of them with `--method auto` (fitted on their OOF files, applied to their
test.csv files) and scores it on the held-out test split against every drawn input. The guard: auto is never
below the best drawn input on test (the best by test macro-F1, which a user cannot know) by more than one
post's worth of macro-F1 (the largest change that re-labelling one test post can make to that input's score).

    HF_HUB_OFFLINE=1 python benchmarks/ensemble_guard.py [--draws 20] [--work /tmp/mmtune-guard-bench]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from importlib.resources import as_file, files
from pathlib import Path

import numpy as np

from mmtune.config import load_config
from mmtune.demo import make_demo_data
from mmtune.ensemble.methods.auto import one_post
from mmtune.evaluation.calibration import macro_f1
from mmtune.evaluation.predictions import read_gold_labels, read_predictions
from mmtune.recipes.cv import run_cv
from mmtune.recipes.ensemble import EnsembleRequest, run_ensemble

# Perturbed settings of the demo config, from strong to weak.
SETTINGS = {
    "demo": ["train.epochs=10", "train.early_stopping_patience=4"],
    "ce": ["train.loss=ce", "train.class_weights=none", "train.epochs=4"],
    "narrow": ["model.fusion.hidden_size=32", "model.fusion.projection_dim=32", "train.epochs=3",
               "train.head_lr=0.0005"],
    "dropout": ["model.fusion.dropout=0.6", "train.epochs=3", "train.weight_decay=0.1", "seed=1"],
    "short": ["train.epochs=2", "train.head_lr=0.0003"],
    "one-epoch": ["train.epochs=1", "train.head_lr=0.0002", "train.loss=ce", "train.class_weights=none"],
}


def cv_runs(work: Path, n_train: int, n_test: int, names: list[str]) -> tuple[dict[str, Path], Path]:
    """Each setting's cv folder (done ones are kept: cv skips finished folds) and the test split's answer key."""
    demo = make_demo_data(work / "data", n_train=n_train, n_test=n_test, seed=0)
    folds_file = None
    runs = {}
    for name in names:
        overrides = SETTINGS[name]
        cv_dir = work / f"cv-{name}"
        data = [f"data.train={demo.train}", f"data.train_images={demo.train_images}", f"data.test={demo.test}",
                f"data.test_images={demo.test_images}", f"output_dir={cv_dir}", "cv.folds=5"]
        with as_file(files("mmtune") / "resources" / "demo.yaml") as path:
            cfg = load_config(path, [*data, *overrides])
        if folds_file is not None:  # one split for all: their OOF rows are comparable
            cfg = replace(cfg, cv=replace(cfg.cv, folds_file=str(folds_file)))
        started = time.perf_counter()
        run_cv(cfg)
        print(f"cv {name}: {time.perf_counter() - started:.0f} s", flush=True)
        folds_file = folds_file or cv_dir / "folds.csv"
        runs[name] = cv_dir
    return runs, demo.test_gold


def test_score(path: Path, gold: dict[str, str]) -> tuple[float, np.ndarray, np.ndarray]:
    pred = read_predictions(path)
    targets = np.array([pred.labels.index(gold[pid]) for pid in pred.ids])
    return macro_f1(pred.probs, targets), pred.probs, targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/mmtune-guard-bench"))
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=400)
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--runs-only", action="store_true", help="only train the cvs")
    args = parser.parse_args()
    runs, gold_file = cv_runs(args.work, args.n_train, args.n_test, args.settings)
    if args.runs_only:
        return
    draws(args, runs, read_gold_labels(gold_file))


def draws(args: argparse.Namespace, runs: dict[str, Path], gold: dict[str, str]) -> None:
    rng = np.random.default_rng(args.seed)
    names = list(runs)
    singles = {name: test_score(runs[name] / "test.csv", gold) for name in names}
    print("cv | OOF macro-F1 | test macro-F1")
    for name in names:
        oof = read_predictions(runs[name] / "oof.csv", need_gold=True)
        print(f"{name} | {macro_f1(oof.probs, oof.targets()):.4f} | {singles[name][0]:.4f}")
    print("draw | inputs | auto's choice | auto test | best input test | gain | one post | ok | seconds")
    gains, failures = [], 0
    for draw in range(args.draws):
        picked = sorted(rng.choice(len(names), size=min(int(rng.integers(2, 5)), len(names)), replace=False))
        inputs = [runs[names[i]] for i in picked]
        started = time.perf_counter()
        out = args.work / "draws" / f"{draw}.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        for stale in (out, out.with_suffix(".json"), out.with_name(f"{draw}.oof.csv")):
            stale.unlink(missing_ok=True)
        result = run_ensemble(EnsembleRequest(inputs=inputs, out=out, method="auto", seed=draw))
        seconds = time.perf_counter() - started
        auto, _, _ = test_score(out, gold)
        best_name = max((names[i] for i in picked), key=lambda n: singles[n][0])
        best, best_probs, targets = singles[best_name]
        tolerance = one_post(best_probs, targets)
        ok = auto >= best - tolerance - 1e-12
        failures += not ok
        gains.append(auto - best)
        print(f"{draw} | {'+'.join(names[i] for i in picked)} | {result.summary['auto']['choice']} | {auto:.4f} | "
              f"{best:.4f} ({best_name}) | {auto - best:+.4f} | {tolerance:.4f} | {'yes' if ok else 'NO'} | "
              f"{seconds:.1f}", flush=True)
    print(f"mean gain of auto over the best input on test: {np.mean(gains):+.4f} (median {np.median(gains):+.4f}, "
          f"worst {min(gains):+.4f}); draws below the best input by more than one post: {failures}")


if __name__ == "__main__":
    main()
