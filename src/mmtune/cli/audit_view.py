"""The terminal view of an audit: a few rich tables, the JSON stays the complete record.

Labels, ids, file names and fault details come from the data: they go into the tables as `literal` text."""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table

from mmtune.terminal import literal

MAX_FAULT_ROWS = 15


def render_audit(report: dict[str, Any], console: Console) -> None:
    _render_file(report, console)
    if "test" in report:
        _render_file(report["test"], console)
        _render_shift_and_leakage(report["test"], console)


def _render_file(summary: dict[str, Any], console: Console) -> None:
    console.rule(literal(summary["file"], style="bold"))
    console.print(f"posts: {summary['posts']}   bad posts (skipped under on_bad_row=skip): {summary['bad_posts']}")
    console.print(_labels_table(summary["labels"]))
    console.print(_captions_table(summary["captions"]))
    console.print(_images_table(summary["images"]))
    console.print(_faults_table(summary))


def _labels_table(labels: dict[str, Any]) -> Table:
    table = Table(title="labels", title_justify="left")
    table.add_column("label")
    table.add_column("posts", justify="right")
    table.add_column("share", justify="right")
    total = sum(labels["counts"].values()) or 1
    for label, count in labels["counts"].items():
        table.add_row(literal(label), str(count), f"{count / total:.1%}")
    if labels["unlabelled"]:
        table.add_row("(no label)", str(labels["unlabelled"]), "")
    if labels["imbalance_ratio"] is not None:
        table.caption = f"imbalance ratio (largest / smallest class): {labels['imbalance_ratio']}"
    return table


def _stats_row(name: str, stats: dict[str, float]) -> list[str]:
    if not stats.get("count"):
        return [name, "-", "-", "-", "-", "-"]
    return [name, f"{stats['mean']:.1f}", f"{stats['min']:g}", f"{stats['median']:g}", f"{stats['p95']:g}",
            f"{stats['max']:g}"]


def _stats_table(title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for name in ("", "mean", "min", "median", "p95", "max"):
        table.add_column(name, justify="right" if name else "left")
    return table


def _captions_table(captions: dict[str, Any]) -> Table:
    table = _stats_table("captions")
    table.add_row(*_stats_row("words", captions["words"]))
    table.add_row(*_stats_row("characters", captions["chars"]))
    table.caption = (
        f"duplicate-caption groups: {captions['duplicate_groups']} "
        f"({captions['posts_in_duplicate_groups']} posts), with conflicting labels: {captions['conflicting_groups']}"
    )
    return table


def _images_table(images: dict[str, Any]) -> Table:
    table = _stats_table("images")
    table.add_row(*_stats_row("width", images["width"]))
    table.add_row(*_stats_row("height", images["height"]))
    table.add_row(*_stats_row("aspect (long/short)", images["aspect"]))
    formats = ", ".join(f"{name} {count}" for name, count in images["formats"].items())
    per_post = ", ".join(f"{n}: {count}" for n, count in images["per_post"].items())
    table.caption = (
        f"readable images: {images['readable']} ({formats}); images per post {per_post}\n"
        f"identical-image groups: {images['duplicate_groups']} ({images['posts_sharing_an_image']} posts); "
        f"near-duplicate groups (phash <= {images['near_duplicate_max_bits']} bits): {images['near_duplicate_groups']}"
    )
    return table


def _faults_table(summary: dict[str, Any]) -> Table:
    table = Table(title="faults", title_justify="left")
    table.add_column("kind")
    table.add_column("posts", justify="right")
    table.add_column("example")
    examples: dict[str, dict[str, str]] = {}
    for fault in summary["faults"]:
        examples.setdefault(fault["kind"], fault)
    counts = Counter(summary["fault_counts"])
    for kind, count in list(counts.items())[:MAX_FAULT_ROWS]:
        example = examples[kind]
        table.add_row(kind, str(count), literal(f"id {example['id']}: {example['detail']}"))
    if not counts:
        table.add_row("(none)", "0", "")
    return table


def _render_shift_and_leakage(test: dict[str, Any], console: Console) -> None:
    shift, leak = test["shift"], test["leakage"]
    table = Table(title="train vs test", title_justify="left")
    table.add_column("check")
    table.add_column("value", justify="right")
    table.add_row("mean caption words (train / test)", f"{shift['train_mean_words']} / {shift['test_mean_words']}")
    table.add_row("test / train caption length", str(shift["test_to_train_ratio"]))
    table.add_row("test posts with a train caption", str(leak["test_posts_with_train_caption"]))
    table.add_row("test posts with an identical train image", str(leak["test_posts_with_train_image"]))
    table.add_row("test posts with a near-duplicate train image",
                  str(leak["test_posts_with_near_duplicate_train_image"]))
    console.print(table)
