"""`mmtune report RUN_DIR|CV_DIR`: one self-contained HTML page (figures and thumbnails inlined as PNG/JPEG).
(Several folders: evaluation/report_many.py, which shares this module's gallery pieces and template setup.)

For a run: its validation predictions; for a cv folder: the OOF predictions, every fold's learning
curve and the spread across folds. The gallery lists the misclassified posts (thumbnail, caption,
gold, predicted, probabilities), most confident mistakes first, sortable and filterable in the page; then the
resolved config and the predicted label distribution of the test file.
"""

from __future__ import annotations

import base64
import io
import logging
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from mmtune.config import Config, ImageConfig, config_yaml, load_config
from mmtune.data.checks import load_posts
from mmtune.data.images import load_image
from mmtune.data.post import Post
from mmtune.errors import InputError
from mmtune.evaluation import figures
from mmtune.evaluation.folders import (
    OOF_FILE,
    SUMMARY_FILE,
    TEST_FILE,
    TEST_PREDICTIONS,
    fold_dir,
    read_cv_summary,
    read_history,
)
from mmtune.evaluation.metrics import evaluate_probs
from mmtune.evaluation.predictions import Predictions, read_predictions
from mmtune.outputs import atomic_open

log = logging.getLogger(__name__)
THUMB_SIDE = 112


@dataclass
class ReportData:
    title: str
    kind: str  # run | cv
    cfg: Config
    preds: Predictions
    targets: np.ndarray
    histories: dict[str, list[dict[str, Any]]]
    cv_summary: dict[str, Any] | None
    test: Predictions | None = None  # the predictions of data.test (a run's test_predictions.csv, a cv's test.csv)


def gather(run_dir: Path) -> ReportData:
    """Read a run folder (config.yaml + val_predictions.csv) or a cv folder (oof.csv + fold-K/)."""
    if (run_dir / OOF_FILE).exists() and (run_dir / SUMMARY_FILE).exists():
        summary = read_cv_summary(run_dir / SUMMARY_FILE)
        fold_dirs = {k: fold_dir(run_dir, k) for k in summary["folds"]}
        cfg = load_config(next(iter(fold_dirs.values())) / "config.yaml")
        preds = read_predictions(run_dir / OOF_FILE, need_gold=True)
        histories = {f"fold {k}": read_history(d) for k, d in fold_dirs.items()}
        return ReportData(f"{cfg.name}: {len(fold_dirs)}-fold cv", "cv", cfg, preds, preds.targets(), histories,
                          summary, _test_predictions(run_dir / TEST_FILE))
    if (run_dir / "config.yaml").exists() and (run_dir / "val_predictions.csv").exists():
        cfg = load_config(run_dir / "config.yaml")
        preds = read_predictions(run_dir / "val_predictions.csv", need_gold=True)
        return ReportData(f"{cfg.name}: run {run_dir.name}", "run", cfg, preds, preds.targets(),
                          {"run": read_history(run_dir)}, None, _test_predictions(run_dir / TEST_PREDICTIONS))
    raise InputError(f"{run_dir}: neither a finished run folder (config.yaml, val_predictions.csv) "
                     "nor a cv folder (oof.csv, cv_summary.json)")


def _test_predictions(path: Path) -> Predictions | None:
    return read_predictions(path) if path.is_file() else None


def label_distribution(tests: dict[str, Predictions]) -> dict[str, Any]:
    """Each label's count and share of the predicted labels of each test file (columns: `tests`' names)."""
    labels = list(dict.fromkeys(label for preds in tests.values() for label in preds.labels))
    counts = {name: Counter(preds.predicted) for name, preds in tests.items()}
    rows = [{"label": label, "cells": [(counts[name][label], counts[name][label] / len(tests[name].ids))
                                       for name in tests]} for label in labels]
    return {"names": list(tests), "rows": rows, "posts": [len(preds.ids) for preds in tests.values()]}


# ----------------------------------------------------------------------------------------------
# Gallery


def posts_by_id(cfg: Config) -> dict[str, Post]:
    """The validated posts (data.val when the run had one, else data.train, whose folds were validated), for
    thumbnails and captions; a report without them still renders."""
    data = cfg.data
    key = "data.val" if data.val else "data.train"
    path, images = (data.val, data.val_images or data.train_images) if data.val else (data.train, data.train_images)
    try:
        posts = load_posts(path, images, data, labels=data.labels).require_posts(key)
    except InputError as exc:
        log.warning(f"report gallery without thumbnails or captions: {exc}")
        return {}
    return {post.id: post for post in posts}


def thumbnail(post: Post | None, image: ImageConfig) -> str | None:
    if post is None or not post.images:
        return None
    try:
        picture = load_image(post.images[0], image.max_pixels, min_size=THUMB_SIDE, max_bytes=image.max_bytes)
    except Exception as exc:  # why: a broken picture must not stop the report; the cell says so instead
        log.debug(f"no thumbnail for post {post.id}: {exc}")
        return None
    picture.thumbnail((THUMB_SIDE, THUMB_SIDE))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def gallery_rows(data: ReportData, limit: int) -> tuple[list[dict[str, Any]], int]:
    """The misclassified posts, most confident mistakes first; and how many there are in all."""
    predicted = data.preds.probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != data.targets)
    wrong = wrong[np.argsort(-data.preds.probs[wrong, predicted[wrong]], kind="stable")]
    posts = posts_by_id(data.cfg) if len(wrong) else {}
    rows = []
    for row in wrong[:limit]:
        pid = data.preds.ids[row]
        post = posts.get(pid)
        rows.append({
            "id": pid, "gold": data.preds.labels[data.targets[row]], "predicted": data.preds.labels[predicted[row]],
            "confidence": float(data.preds.probs[row, predicted[row]]),
            "gold_prob": float(data.preds.probs[row, data.targets[row]]),
            "probs": [float(p) for p in data.preds.probs[row]],  # in `labels` order: a label is never a JS key
            "fold": data.preds.folds[row] if data.preds.folds else None,
            "text": post.text if post else "", "thumb": thumbnail(post, data.cfg.data.image),
        })
    return rows, len(wrong)


# ----------------------------------------------------------------------------------------------
# Page


@dataclass(frozen=True)
class Figure:
    title: str
    alt: str
    png: bytes

    @property
    def src(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode()


def figure_blocks(data: ReportData, metrics: dict[str, Any]) -> list[Figure]:
    blocks = []
    histories = {name: h for name, h in data.histories.items() if h}
    if histories:
        blocks.append(Figure("learning curves", "learning curves",
                             figures.learning_curves(histories, data.cfg.train.metric)))
    blocks.append(Figure("confusion matrix", "confusion matrix",
                         figures.confusion(metrics["confusion"], data.preds.labels)))
    blocks.append(Figure("per-class F1", "per-class F1", figures.per_class_f1(metrics["per_class"])))
    blocks.append(Figure("reliability", "reliability diagram", figures.reliability(data.preds.probs, data.targets)))
    if data.cv_summary:
        spread = {label: row["folds"] for label, row in data.cv_summary["per_class_f1"].items()}
        blocks.append(Figure("fold spread", "fold spread",
                             figures.fold_spread(data.cv_summary["macro_f1"]["folds"], spread)))
    return blocks


@lru_cache(maxsize=1)
def templates() -> jinja2.Environment:
    """The report template, filled in one pass: a value is never read as template syntax, and every value is
    escaped for where it lands (text and attributes by autoescape, the gallery's JSON block by |tojson)."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("mmtune", "resources"),
                             autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined)
    env.policies["json.dumps_kwargs"] = {"allow_nan": False}  # why: NaN is not JSON; JSON.parse would reject the page
    return env


def render(data: ReportData, gallery_size: int) -> str:
    metrics = evaluate_probs(data.preds.probs, data.targets, data.preds.labels)
    rows, n_wrong = gallery_rows(data, gallery_size)
    return templates().get_template("report.html").render(
        title=data.title, source="out-of-fold" if data.kind == "cv" else "validation", metrics=metrics,
        per_class=list(metrics["per_class"].items()), spread=data.cv_summary["macro_f1"] if data.cv_summary else None,
        figures=figure_blocks(data, metrics), shown=len(rows), wrong=n_wrong,
        gallery={"labels": data.preds.labels, "rows": rows}, configs=[(data.title, config_yaml(data.cfg))],
        distribution=label_distribution({"test predictions": data.test}) if data.test is not None else None)


def write_report(run_dir: Path, out: Path | None = None, gallery_size: int = 120) -> Path:
    if gallery_size < 0:
        raise InputError(f"the gallery size (--gallery) must be 0 or more, got {gallery_size}")
    data = gather(Path(run_dir))
    out = out or Path(run_dir) / "report.html"
    return write_page(out, render(data, gallery_size))


def write_page(out: Path, page: str) -> Path:
    if out.is_dir():
        raise InputError(f"{out}: is a folder; --out names the HTML file to write")
    # why backslashreplace: text that still holds a lone surrogate ("\ud800") cannot be UTF-8; it shows escaped
    with atomic_open(out, "w", encoding="utf-8", errors="backslashreplace") as handle:
        handle.write(page)
    return out
