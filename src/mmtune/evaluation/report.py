"""`mmtune report RUN_DIR|CV_DIR`: one self-contained HTML page (figures and thumbnails inlined as PNG/JPEG).

For a run: its validation predictions; for a cv folder: the OOF predictions, every fold's learning
curve and the spread across folds. The gallery lists the misclassified posts (thumbnail, caption,
gold, predicted, probabilities), most confident mistakes first, sortable and filterable in the page.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from mmtune.config import Config, load_config
from mmtune.data.checks import load_posts
from mmtune.data.images import load_image
from mmtune.data.post import Post
from mmtune.ensemble.cv import OOF_FILE, SUMMARY_FILE, fold_dir
from mmtune.ensemble.inputs import Predictions, read_prediction_file
from mmtune.errors import InputError
from mmtune.evaluation import figures
from mmtune.evaluation.metrics import evaluate_probs

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


def _history(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if line.strip():
            record = _json(line, f"{path} line {number}")
            if not isinstance(record, dict) or not _is_number(record.get("step")):
                raise InputError(f"{path} line {number}: not an evaluation record (a JSON object with a 'step')")
            records.append(record)
    return records


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise InputError(f"{where}: damaged, not JSON ({getattr(exc, 'msg', 'nested too deep')})") from None


def _cv_summary(path: Path) -> dict[str, Any]:
    """cv_summary.json with the parts the report reads: fold numbers, macro-F1 per fold, per-class F1 per fold."""
    summary = _json(_read_text(path), str(path))
    if not isinstance(summary, dict):
        raise InputError(f"{path}: not a cv summary (a JSON object)")
    folds, macro, per_class = summary.get("folds"), summary.get("macro_f1"), summary.get("per_class_f1")
    problems = []
    if not isinstance(folds, list) or not folds or not all(isinstance(k, int) and not isinstance(k, bool)
                                                           for k in folds):
        problems.append("'folds' must list fold numbers")
    if not (isinstance(macro, dict) and _is_number(macro.get("mean")) and _is_number(macro.get("std"))
            and isinstance(macro.get("folds"), dict) and all(map(_is_number, macro["folds"].values()))):
        problems.append("'macro_f1' must hold mean, std and folds")
    if not (isinstance(per_class, dict) and all(isinstance(row, dict) and isinstance(row.get("folds"), list)
                                                and all(map(_is_number, row["folds"])) for row in per_class.values())):
        problems.append("'per_class_f1' must hold folds per label")
    if problems:
        raise InputError(f"{path}: not a cv summary mmtune wrote ({'; '.join(problems)})")
    return summary


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def gather(run_dir: Path) -> ReportData:
    """Read a run folder (config.yaml + val_predictions.csv) or a cv folder (oof.csv + fold-K/)."""
    if (run_dir / OOF_FILE).exists() and (run_dir / SUMMARY_FILE).exists():
        summary = _cv_summary(run_dir / SUMMARY_FILE)
        fold_dirs = {k: fold_dir(run_dir, k) for k in summary["folds"]}
        cfg = load_config(next(iter(fold_dirs.values())) / "config.yaml")
        preds = read_prediction_file(run_dir / OOF_FILE, need_gold=True)
        histories = {f"fold {k}": _history(d) for k, d in fold_dirs.items()}
        return ReportData(f"{cfg.name}: {len(fold_dirs)}-fold cv", "cv", cfg, preds, preds.targets(), histories,
                          summary)
    if (run_dir / "config.yaml").exists() and (run_dir / "val_predictions.csv").exists():
        cfg = load_config(run_dir / "config.yaml")
        preds = read_prediction_file(run_dir / "val_predictions.csv", need_gold=True)
        return ReportData(f"{cfg.name}: run {run_dir.name}", "run", cfg, preds, preds.targets(),
                          {"run": _history(run_dir)}, None)
    raise InputError(f"{run_dir}: neither a finished run folder (config.yaml, val_predictions.csv) "
                     "nor a cv folder (oof.csv, cv_summary.json)")


# ----------------------------------------------------------------------------------------------
# Gallery


def _posts_by_id(cfg: Config) -> dict[str, Post]:
    """The validated posts (data.val when the run had one, else data.train, whose folds were validated), for
    thumbnails and captions; a report without them still renders."""
    data = cfg.data
    path, images = (data.val, data.val_images or data.train_images) if data.val else (data.train, data.train_images)
    try:
        posts = load_posts(path, images, data, labels=data.labels).posts
    except InputError as exc:
        log.warning(f"report gallery without thumbnails or captions: {exc}")
        return {}
    return {post.id: post for post in posts}


def _thumbnail(post: Post | None, max_pixels: int) -> str | None:
    if post is None or not post.images:
        return None
    try:
        image = load_image(post.images[0], max_pixels, min_size=THUMB_SIDE)
    except Exception as exc:  # why: a broken picture must not stop the report; the cell says so instead
        log.debug(f"no thumbnail for post {post.id}: {exc}")
        return None
    image.thumbnail((THUMB_SIDE, THUMB_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def gallery_rows(data: ReportData, limit: int) -> tuple[list[dict[str, Any]], int]:
    """The misclassified posts, most confident mistakes first; and how many there are in all."""
    predicted = data.preds.probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != data.targets)
    wrong = wrong[np.argsort(-data.preds.probs[wrong, predicted[wrong]], kind="stable")]
    posts = _posts_by_id(data.cfg) if len(wrong) else {}
    rows = []
    for row in wrong[:limit]:
        pid = data.preds.ids[row]
        post = posts.get(pid)
        rows.append({
            "id": pid, "gold": data.preds.labels[data.targets[row]], "predicted": data.preds.labels[predicted[row]],
            "confidence": float(data.preds.probs[row, predicted[row]]),
            "gold_prob": float(data.preds.probs[row, data.targets[row]]),
            "probs": {label: float(p) for label, p in zip(data.preds.labels, data.preds.probs[row])},
            "fold": data.preds.folds[row] if data.preds.folds else None,
            "text": post.text if post else "", "thumb": _thumbnail(post, data.cfg.data.image.max_pixels),
        })
    return rows, len(wrong)


# ----------------------------------------------------------------------------------------------
# Page


def _img(png: bytes, alt: str) -> str:
    return f'<img class="figure" alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def figure_blocks(data: ReportData, metrics: dict[str, Any]) -> list[tuple[str, str]]:
    blocks = []
    histories = {name: h for name, h in data.histories.items() if h}
    if histories:
        blocks.append(("learning curves", _img(figures.learning_curves(histories, data.cfg.train.metric),
                                               "learning curves")))
    blocks.append(("confusion matrix", _img(figures.confusion(metrics["confusion"], data.preds.labels),
                                            "confusion matrix")))
    blocks.append(("per-class F1", _img(figures.per_class_f1(metrics["per_class"]), "per-class F1")))
    blocks.append(("reliability", _img(figures.reliability(data.preds.probs, data.targets), "reliability diagram")))
    if data.cv_summary:
        spread = {label: row["folds"] for label, row in data.cv_summary["per_class_f1"].items()}
        blocks.append(("fold spread", _img(figures.fold_spread(data.cv_summary["macro_f1"]["folds"], spread),
                                           "fold spread")))
    return blocks


def _scores_table(data: ReportData, metrics: dict[str, Any]) -> str:
    head = "<tr><th>label</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
    rows = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{m['precision']:.3f}</td><td>{m['recall']:.3f}</td>"
        f"<td>{m['f1']:.3f}</td><td>{m['support']}</td></tr>" for label, m in metrics["per_class"].items())
    spread = ""
    if data.cv_summary:
        macro = data.cv_summary["macro_f1"]
        spread = f" &middot; per fold {macro['mean']:.3f} &plusmn; {macro['std']:.3f}"
    source = "out-of-fold" if data.kind == "cv" else "validation"
    summary = (f"<p class='scores'>{source} macro-F1 <b>{metrics['macro_f1']:.3f}</b>{spread} &middot; "
               f"accuracy {metrics['accuracy']:.3f} &middot; log-loss {metrics['log_loss']:.3f} &middot; "
               f"{metrics['n']} posts</p>")
    return summary + f"<table class='scores'>{head}{rows}</table>"


def render(data: ReportData, gallery_size: int) -> str:
    metrics = evaluate_probs(data.preds.probs, data.targets, data.preds.labels)
    rows, n_wrong = gallery_rows(data, gallery_size)
    figures_html = "".join(f"<section class='card'><h2>{html.escape(title)}</h2>{body}</section>"
                           for title, body in figure_blocks(data, metrics))
    template = (files("mmtune") / "resources" / "report.html").read_text(encoding="utf-8")
    page = {
        "title": html.escape(data.title), "scores": _scores_table(data, metrics), "figures": figures_html,
        "shown": str(len(rows)), "wrong": str(n_wrong),
        # `</` inside a <script> would end it early; JSON allows the escaped form.
        "gallery_json": json.dumps({"labels": data.preds.labels, "rows": rows}).replace("</", "<\\/"),
    }
    for key, value in page.items():
        template = template.replace("{{" + key + "}}", value)
    return template


def write_report(run_dir: Path, out: Path | None = None, gallery_size: int = 120) -> Path:
    data = gather(Path(run_dir))
    out = out or Path(run_dir) / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(render(data, gallery_size), encoding="utf-8")
    tmp.replace(out)
    return out
