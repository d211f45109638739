"""Synthetic run folders, cv folders and ensembles written with the real writers, for the leaderboard and the
many-run report: no model is trained, each folder's predictions are drawn with a known share right."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mmtune.config import load_config, save_config
from mmtune.ensemble.cv import summarize
from mmtune.evaluation.folders import OOF_FILE, SUMMARY_FILE, TEST_FILE, fold_dir
from mmtune.evaluation.predictions import Predictions, write_predictions
from mmtune.recipes.ensemble import EnsembleRequest, run_ensemble

LABELS = ["not-sarcasm", "text-sarcasm", "image-sarcasm"]
N_TRAIN, N_TEST, FOLDS = 60, 30, 3


@dataclass
class Data:
    train: Path
    images: Path
    train_ids: list[str]
    train_gold: list[str]
    test_ids: list[str]
    test_gold: list[str]
    gold_file: Path  # id,label of the test posts


def write_data(root: Path, labels: list[str] = LABELS, texts: list[str] | None = None) -> Data:
    """Posts with a picture and a caption each; captions (and ids) from `texts` when given (hostile strings)."""
    images = root / "images"
    images.mkdir(parents=True)
    records, ids, gold = {}, [], []
    for n in range(N_TRAIN):
        post_id = f"{texts[n % len(texts)]}#{n}" if texts else f"p{n}"
        Image.new("RGB", (24, 24), (20 * (n % 12), 90, 160)).save(images / f"{n}.jpg")
        label = labels[(n // FOLDS) % len(labels)]  # every fold (n % FOLDS) holds every label
        caption = f"{texts[(n + 1) % len(texts)]} caption {n}" if texts else f"caption {n}"
        records[post_id] = {"image": f"{n}.jpg", "caption": caption, "label": label}
        ids.append(post_id)
        gold.append(label)
    train = root / "train.json"
    train.write_text(json.dumps(records), encoding="utf-8")
    test_ids = [f"t{n}" for n in range(N_TEST)]
    test_gold = [labels[n % len(labels)] for n in range(N_TEST)]
    gold_file = root / "test_gold.csv"
    gold_file.write_text("id,label\n" + "".join(f"{i},{g}\n" for i, g in zip(test_ids, test_gold)), encoding="utf-8")
    return Data(train, images, ids, gold, test_ids, test_gold, gold_file)


def draw(gold: list[str], labels: list[str], right: float, seed: int) -> np.ndarray:
    """Probabilities whose argmax is the gold label for a share `right` of the posts (else a wrong label)."""
    rng = np.random.default_rng(seed)
    probs = rng.uniform(0.05, 0.2, (len(gold), len(labels)))
    for row, label in enumerate(gold):
        k = labels.index(label)
        top = k if rng.random() < right else (k + 1 + int(rng.integers(len(labels) - 1))) % len(labels)
        probs[row, top] = 0.6 + 0.3 * rng.random()
    return probs / probs.sum(axis=1, keepdims=True)


def _write_run(folder: Path, data: Data, name: str, overrides: list[str], labels: list[str], rows: list[int],
               right: float, seed: int, fold: int | None = None) -> Predictions:
    folder.mkdir(parents=True)
    cfg = load_config(None, [f"name={name}", f"output_dir={folder}", f"data.train={data.train}",
                             f"data.train_images={data.images}", f"data.labels={json.dumps(labels)}",
                             *([f"train.val_fold={fold}"] if fold is not None else []), *overrides])
    save_config(cfg, folder / "config.yaml")
    history = [{"kind": "epoch", "epoch": e, "step": 4 * e, "train_loss": 1.0 / e, "macro_f1": right * e / 3,
                "elapsed_s": 10.0 * e + 100 * (fold or 0)} for e in (1, 2, 3)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history), encoding="utf-8")
    gold = [data.train_gold[r] for r in rows]
    val = Predictions([data.train_ids[r] for r in rows], draw(gold, labels, right, seed), labels, gold=gold)
    write_predictions(folder / "val_predictions.csv", val)
    test = Predictions(data.test_ids, draw(data.test_gold, labels, right, seed + 1), labels)
    write_predictions(folder / "test_predictions.csv", test)
    return val


def make_run(root: Path, data: Data, name: str, overrides: list[str], right: float, seed: int = 0,
             labels: list[str] = LABELS) -> Path:
    """A finished train run validated on the posts of fold 0."""
    _write_run(root, data, name, overrides, labels, list(range(0, N_TRAIN, FOLDS)), right, seed)
    return root


def make_cv(root: Path, data: Data, name: str, overrides: list[str], right: float, seed: int = 0,
            labels: list[str] = LABELS) -> Path:
    """A cv folder as `mmtune cv` leaves it: fold-K runs, oof.csv, test.csv and cv_summary.json (the real
    summarize), every training post in fold n % FOLDS."""
    folds = [n % FOLDS for n in range(N_TRAIN)]
    per_fold = {k: _write_run(fold_dir(root, k), data, name, overrides, labels,
                              [n for n in range(N_TRAIN) if folds[n] == k], right, seed + 10 * k, fold=k)
                for k in range(FOLDS)}
    ids = [pid for k in range(FOLDS) for pid in per_fold[k].ids]
    order = [data.train_ids.index(pid) for pid in ids]
    probs = np.concatenate([per_fold[k].probs for k in range(FOLDS)])
    oof = Predictions(ids, probs, labels, gold=[data.train_gold[r] for r in order], folds=[folds[r] for r in order])
    write_predictions(root / OOF_FILE, oof)
    (root / SUMMARY_FILE).write_text(json.dumps(summarize(per_fold, oof, total=N_TRAIN)), encoding="utf-8")
    test = Predictions(data.test_ids, draw(data.test_gold, labels, right, seed + 5), labels)
    write_predictions(root / TEST_FILE, test)
    return root


def make_ensemble(inputs: list[Path], out: Path) -> Path:
    """`mmtune ensemble INPUTS --out out.csv --method mean`: returns its summary JSON."""
    run_ensemble(EnsembleRequest(inputs=inputs, out=out, method="mean"))
    return out.with_suffix(".json")


@dataclass
class Board:
    root: Path
    data: Data
    runs: dict[str, Path]


def make_board(root: Path, labels: list[str] = LABELS, texts: list[str] | None = None,
               names: dict[str, str] | None = None) -> Board:
    """runs/{lr-small, lr-big} (train.lr differs), runs/cv-{a,b} (seed and lr differ), runs/blend.json (the mean
    of the two cvs): the good cv is cv-b, the poor run is lr-small. `names`: other folder names for those keys,
    `labels` and `texts`: other labels, captions and ids (hostile strings)."""
    folder = {key: (names or {}).get(key, key) for key in ("lr-small", "lr-big", "cv-a", "cv-b", "blend")}
    data = write_data(root / "data", labels, texts)
    runs = root / "runs"
    made = {
        "lr-small": make_run(runs / folder["lr-small"], data, "small", ["train.lr=0.0001"], 0.4, 0, labels),
        "lr-big": make_run(runs / folder["lr-big"], data, "big", ["train.lr=0.001"], 0.7, 1, labels),
        "cv-a": make_cv(runs / folder["cv-a"], data, "cv", ["train.lr=0.001", "seed=1"], 0.6, 2, labels),
        "cv-b": make_cv(runs / folder["cv-b"], data, "cv", ["train.lr=0.003", "seed=2"], 0.9, 3, labels),
    }
    made["blend"] = make_ensemble([made["cv-a"], made["cv-b"]], runs / f"{folder['blend']}.csv")
    return Board(root, data, made)
