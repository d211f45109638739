"""`mmtune report DIR DIR ...`: one self-contained page comparing runs, cv folders and ensembles.

The leaderboard (sortable by any column, filtered by a text box), the learning curves overlaid, per-class F1
side by side, a confusion matrix each, the posts on which the best two disagree (thumbnail, caption, gold, what
each predicted), the predicted label distribution of each test file and the resolved config of each. Figures
are drawn for the best MAX_COMPARED entries (the leaderboard lists all). Every name, label, caption and config
value is data: it reaches the page as escaped text or inside the JSON blocks (|tojson), never as markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmtune.config import Config
from mmtune.evaluation import figures
from mmtune.evaluation.leaderboard import Entry, Skipped
from mmtune.evaluation.leaderboard_table import cells, columns, labels_of
from mmtune.evaluation.metrics import evaluate_probs
from mmtune.evaluation.report import Figure, label_distribution, posts_by_id, templates, thumbnail, write_page

MAX_COMPARED = 8


def compared(entries: Sequence[Entry]) -> list[Entry]:
    """The entries the figures show: the best MAX_COMPARED with validation/OOF predictions, best first."""
    scored = [e for e in entries if e.predictions is not None and e.macro_f1 is not None]
    return sorted(scored, key=lambda e: -e.macro_f1)[:MAX_COMPARED]


def board_data(entries: Sequence[Entry], keys: Sequence[str]) -> dict[str, Any]:
    """The leaderboard for the page's script: column titles, and each row's cell texts and sort values."""
    labels = labels_of(entries)
    rows = [cells(entry, keys, labels) for entry in entries]
    return {"columns": [{"key": c.key, "title": c.title, "numeric": c.numeric} for c in columns(keys, labels)],
            "rows": [{"text": [text for text, _ in row], "sort": [value for _, value in row]} for row in rows]}


def figure_blocks(entries: Sequence[Entry]) -> list[Figure]:
    blocks = []
    curves = {entry.name: {k: h for k, h in entry.histories.items() if h} for entry in entries}
    curves = {name: histories for name, histories in curves.items() if histories}
    if curves:
        blocks.append(Figure("learning curves", "learning curves, overlaid",
                             figures.overlaid_learning_curves(curves, "macro_f1")))
    if entries:
        blocks.append(Figure("per-class F1", "per-class F1 side by side",
                             figures.per_class_f1_compared({e.name: e.per_class_f1 for e in entries})))
    for entry in entries:
        preds = entry.predictions
        matrix = evaluate_probs(preds.probs, preds.targets(), preds.labels)["confusion"]
        blocks.append(Figure(f"confusion matrix: {entry.name}", "confusion matrix",
                             figures.confusion(matrix, preds.labels)))
    return blocks


def disagreements(first: Entry, second: Entry, limit: int) -> tuple[list[dict[str, Any]], int]:
    """The posts both predicted on which the best two differ, the most confident disagreement first; and how
    many there are in all. Labels are compared by name (two runs may order them differently)."""
    a, b = first.predictions, second.predictions
    rows_b = {pid: row for row, pid in enumerate(b.ids)}
    common = [(row, rows_b[pid]) for row, pid in enumerate(a.ids) if pid in rows_b]
    predicted_a, predicted_b = a.probs.argmax(axis=1), b.probs.argmax(axis=1)
    differ = [(ra, rb) for ra, rb in common if a.labels[predicted_a[ra]] != b.labels[predicted_b[rb]]]
    differ.sort(key=lambda pair: -max(a.probs[pair[0]].max(), b.probs[pair[1]].max()))
    cfg = _config_with_posts(first, second)
    posts = posts_by_id(cfg) if cfg is not None and differ else {}
    rows = []
    for ra, rb in differ[:limit]:
        pid = a.ids[ra]
        post = posts.get(pid)
        rows.append({
            "id": pid, "gold": a.gold[ra] if a.gold is not None else None,
            "a": a.labels[predicted_a[ra]], "a_prob": float(a.probs[ra].max()),
            "b": b.labels[predicted_b[rb]], "b_prob": float(b.probs[rb].max()),
            "text": post.text if post else "", "thumb": thumbnail(post, cfg.data.image) if cfg else None,
        })
    return rows, len(differ)


def _config_with_posts(*entries: Entry) -> Config | None:
    """The config whose data files hold the compared posts (an ensemble has none: the other entry's)."""
    return next((entry.cfg for entry in entries if entry.cfg is not None), None)


def render_many(entries: Sequence[Entry], keys: Sequence[str], skipped: Sequence[Skipped], gallery_size: int) -> str:
    shown = compared(entries)
    rows, n_differ = disagreements(shown[0], shown[1], gallery_size) if len(shown) >= 2 else ([], 0)
    tests = {entry.name: entry.test for entry in entries if entry.test is not None}
    return templates().get_template("report_many.html").render(
        title=f"{len(entries)} runs compared", board=board_data(entries, keys), figures=figure_blocks(shown),
        compared=[e.name for e in shown], skipped=[(str(s.path), s.reason) for s in skipped],
        pair=[e.name for e in shown[:2]], n_differ=n_differ,
        disagree={"names": [e.name for e in shown[:2]], "rows": rows},
        distribution=label_distribution(tests) if tests else None,
        configs=[(entry.name, entry.config_text) for entry in entries if entry.config_text])


def write_many_report(entries: Sequence[Entry], keys: Sequence[str], skipped: Sequence[Skipped], out: Path,
                      gallery_size: int = 120) -> Path:
    return write_page(out, render_many(entries, keys, skipped, gallery_size))
