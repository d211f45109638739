"""The tables the commands print: what a recipe returned, laid out for the terminal.

Labels, ids and file names come from the data: they go into the tables as `literal` text."""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich import box
from rich.table import Table

from mmtune.terminal import literal


def folds_table(folds: dict[str, int], labels: dict[str, str | None], k: int) -> Table:
    counts = Counter((fold, labels[pid]) for pid, fold in folds.items())
    names = sorted({str(label) for label in labels.values()})
    table = Table(title="posts per fold and label", title_justify="left")
    table.add_column("fold")
    for name in names:
        table.add_column(literal(name), justify="right")
    for fold in range(k):
        table.add_row(str(fold), *(str(counts[(fold, name)]) for name in names))
    return table


def cv_table(summary: dict[str, Any]) -> Table:
    folds = [str(k) for k in summary["folds"]]
    table = Table(title=f"cv: macro-F1 {summary['macro_f1']['mean']:.3f} ± {summary['macro_f1']['std']:.3f} "
                        f"over {len(folds)} folds; OOF macro-F1 {summary['oof']['macro_f1']:.3f}",
                  title_justify="left")
    table.add_column("")
    for fold in folds:
        table.add_column(f"fold {fold}", justify="right")
    table.add_column("mean ± std", justify="right")
    macro = summary["macro_f1"]
    table.add_row("macro-F1", *(f"{macro['folds'][f]:.3f}" for f in folds), f"{macro['mean']:.3f} ± {macro['std']:.3f}")
    for label, row in summary["per_class_f1"].items():
        table.add_row(literal(f"F1 {label}"), *(f"{v:.3f}" for v in row["folds"]),
                      f"{row['mean']:.3f} ± {row['std']:.3f}")
    return table


def label_distribution_table(labels: list[str], predicted: Counter[str], training: Counter[str] | None) -> Table:
    """Each label's share of the predictions, beside its share of the training labels when they are known: a
    submission whose shares are far from them is worth a second look before a day's wait for the score."""
    table = Table(title="predicted label distribution" + (" vs training" if training is not None else ""),
                  title_justify="left")
    table.add_column("label")
    table.add_column("predicted", justify="right")
    if training is not None:
        table.add_column("training", justify="right")
    extra = sorted((set(predicted) | set(training or {})) - set(labels))
    for label in [*labels, *extra]:
        row = [literal(label), _share(predicted, label)]
        table.add_row(*row, *([_share(training, label)] if training is not None else []))
    return table


def _share(counts: Counter[str], label: str) -> str:
    total = sum(counts.values())
    return f"{counts[label]} ({100 * counts[label] / total:.1f}%)" if total else "0"


def ensemble_table(summary: dict[str, Any]) -> Table:
    """Each input's OOF macro-F1 beside the ensemble's; every figure out-of-sample (nested CV where fitted)."""
    table = Table(title=f"ensemble ({summary['method']}) on {summary['n_oof']} OOF posts, macro-F1 out-of-sample",
                  title_justify="left")
    for name in ("input", "weight", "OOF macro-F1"):
        table.add_column(name, justify="left" if name == "input" else "right")
    weights = summary.get("weights") or [None] * len(summary["inputs"])
    scores = summary.get("members_oof_macro_f1") or [None] * len(summary["inputs"])
    mapped = set(summary.get("label_mapped_inputs", []))
    for i, (path, weight, score) in enumerate(zip(summary["inputs"], weights, scores)):
        note = " (label map: its weight acts between its label groups, not inside one)" if i in mapped else ""
        table.add_row(literal(f"{path}{note}"), "" if weight is None else f"{weight:.3f}",
                      "" if score is None else f"{score:.3f}")
    if "auto" in summary:
        auto = summary["auto"]
        for name, score in auto["nested_cv_macro_f1"].items():
            note = " (a blend must beat it by more than 2 posts' worth)" if name == "best" else ""
            chosen = ", chosen" if name == auto["choice"] else ""
            table.add_row(f"auto candidate: {name}{note}{chosen}", "", f"{score:.3f}")
    if "ensemble_oof_macro_f1" in summary:
        table.add_row(literal(f"ensemble ({summary['ensemble_oof_scored']})"), "",
                      f"{summary['ensemble_oof_macro_f1']:.3f}")
    for rule in summary.get("rules", []):
        table.add_row(literal(f"rule: {rule['rule']}: {rule_outcome(rule)}"), "",
                      f"{rule['macro_f1_before']:.3f} -> {rule['macro_f1_after']:.3f}")
    calibration = summary.get("calibration")
    if calibration:
        nested = calibration["nested_cv"]
        biases = "with biases" if calibration["biases_applied"] else "temperature only (biases did not help)"
        table.add_row(f"calibrated (T={calibration['temperature']:.2f}, {biases}): biases' effect, nested CV", "",
                      f"{nested['macro_f1_before']:.3f} -> {nested['macro_f1_after']:.3f}")
    return table


def rule_outcome(rule: dict[str, Any]) -> str:
    """Fires, right, changed, and why those may differ: a post the blend already gave the rule's label is
    decided by the rule without a change, so a rule can fire often and change nothing."""
    already = rule["fires"] - rule["changed"]
    why = f" ({already} already had its label)" if already else ""
    applied = "applied" if rule["applied"] else "NOT applied: it lowers OOF macro-F1"
    return f"fires {rule['fires']}, right {rule['correct']}, changed {rule['changed']}{why}; {applied}"


def demo_run_table(labels: list[str], validation: dict[str, Any], held_out: dict[str, Any]) -> Table:
    """The demo run's scores on its validation fold and on the held-out test split."""
    table = Table(title="demo results", title_justify="left")
    for name in ("", "validation fold", "held-out test"):
        table.add_column(name, justify="right" if name else "left")
    for title, key in (("macro-F1", "macro_f1"), ("accuracy", "accuracy")):
        table.add_row(title, f"{validation[key]:.3f}", f"{held_out[key]:.3f}")
    for label in labels:
        table.add_row(literal(f"F1 {label}"), f"{validation['per_class'][label]['f1']:.3f}",
                      f"{held_out['per_class'][label]['f1']:.3f}")
    return table


def workflow_table(figures: dict[str, Any]) -> Table:
    calibration = figures["calibration"]
    applied = "applied" if calibration["biases_applied"] else "not applied, temperature only"
    table = Table(title=f"demo cv on the held-out test split (macro-F1 biases: nested-CV gain on OOF "
                        f"{calibration['nested_cv']['gain']:+.3f}, {applied})", title_justify="left")
    table.add_column("")
    table.add_column("macro-F1", justify="right")
    table.add_column("accuracy", justify="right")
    rows = [(f"best single fold (fold {figures['best_fold']}, by validation)", figures["best_fold_test"]),
            ("mean of the 5 fold models", figures["mean_test"]),
            ("calibrated 5-fold ensemble", figures["calibrated_test"])]
    for name, scores in rows:
        table.add_row(name, f"{scores['macro_f1']:.3f}", f"{scores['accuracy']:.3f}")
    return table


def scores_table(scores: Any, title: str) -> Table:
    """A run's or a prediction file's scores (mmtune.recipes.scores.Scores): the selection metric, macro-F1 and
    each class's F1, one plain row each."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE)
    table.add_column("score")
    table.add_column("value", justify="right")
    if scores.metric != "macro_f1":
        table.add_row(f"{scores.metric} (selection)", f"{scores.value:.4f}")
    table.add_row("macro-F1" + (" (selection)" if scores.metric == "macro_f1" else ""), f"{scores.macro_f1:.4f}")
    for label, f1 in scores.per_class_f1.items():
        table.add_row(literal(f"F1 {label}"), f"{f1:.4f}")
    return table


def runs_table(board: Any) -> Table:
    """The leaderboard (mmtune.recipes.runs.Board): one row per run, cv folder, ensemble or export folder."""
    table = Table(title=f"{len(board.entries)} runs" + (f" ({len(board.skipped)} skipped)" if board.skipped else ""),
                  title_justify="left", box=box.SIMPLE)
    for column in board.columns:
        table.add_column(literal(column.title), justify="right" if column.numeric else "left")
    for entry in board.entries:
        table.add_row(*(literal(text) for text, _ in board.cells(entry)))
    return table
