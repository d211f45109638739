"""The leaderboard as a table: the config keys that differ between entries, the columns and their cells (text
and a value to sort by), sorting, CSV and JSON. The CLI's table and the many-run page both lay these cells out."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mmtune.errors import InputError
from mmtune.evaluation.leaderboard import Entry, Skipped, is_number


def differing_settings(entries: Sequence[Entry]) -> list[str]:
    """The config keys whose values are not the same in every listed entry that has them (runs and cv folders
    have every config key; ensembles have their own `ensemble.*` keys)."""
    keys: list[str] = []
    for entry in entries:
        keys += [key for key in entry.settings if key not in keys]
    return [key for key in keys if len({_cell(e.settings[key]) for e in entries if key in e.settings}) > 1]


_MISSING = object()


def _cell(value: Any) -> str:
    if value is _MISSING:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def setting_text(entry: Entry, key: str) -> str:
    """The entry's value of a config key as the table shows it (JSON spelling: null, true, 1e-05); "" without."""
    return _cell(entry.settings.get(key, _MISSING))


def labels_of(entries: Sequence[Entry]) -> list[str]:
    labels: list[str] = []
    for entry in entries:
        labels += [label for label in entry.per_class_f1 if label not in labels]
    return labels


def record(entry: Entry, keys: Sequence[str]) -> dict[str, Any]:
    """The entry as JSON: plain values only (NaN never appears: an unknown figure is null)."""
    return {
        "name": entry.name, "kind": entry.kind, "path": str(entry.path), "model": entry.model,
        "settings": {key: setting_text(entry, key) for key in keys},
        "macro_f1": entry.macro_f1, "macro_f1_std": entry.macro_f1_std,
        "fold_macro_f1": {str(k): v for k, v in entry.fold_f1.items()}, "per_class_f1": entry.per_class_f1,
        "test_macro_f1": entry.test_macro_f1, "wall_s": entry.wall_s, "date": entry.date,
    }


COLUMNS = ("name", "kind", "model", "macro_f1", "test_macro_f1", "wall_s", "date")


@dataclass(frozen=True)
class Column:
    key: str  # what --sort names it
    title: str
    numeric: bool  # right-aligned


def columns(keys: Sequence[str], labels: Sequence[str]) -> list[Column]:
    """The leaderboard's columns: the fixed ones, each differing config key, each class's F1."""
    return [Column("name", "name", False), Column("kind", "kind", False), Column("model", "model", False),
            *(Column(key, key, False) for key in keys), Column("macro_f1", "macro-F1", True),
            *(Column(f"f1:{label}", f"F1 {label}", True) for label in labels),
            Column("test_macro_f1", "test macro-F1", True), Column("wall_s", "wall", True),
            Column("date", "date", False)]


def cells(entry: Entry, keys: Sequence[str], labels: Sequence[str]) -> list[tuple[str, Any]]:
    """(text, value to sort by) of each column of `columns(keys, labels)`; the value is None where unknown."""
    spread = f" ± {entry.macro_f1_std:.3f}" if entry.macro_f1_std is not None else ""
    return [(entry.name, entry.name), (entry.kind, entry.kind), (entry.model, entry.model),
            *((setting_text(entry, key), _sort_value(entry.settings.get(key))) for key in keys),
            (_number(entry.macro_f1) + (spread if entry.macro_f1 is not None else ""), entry.macro_f1),
            *((_number(entry.per_class_f1.get(x)), entry.per_class_f1.get(x)) for x in labels),
            (_number(entry.test_macro_f1), entry.test_macro_f1), (duration_text(entry.wall_s), entry.wall_s),
            (entry.date or "", entry.date)]


def _sort_value(value: Any) -> float | str | None:
    return None if value is None else float(value) if is_number(value) else _cell(value)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{rest:02d}s"


def sort_keys(keys: Sequence[str], labels: Sequence[str]) -> list[str]:
    """What `--sort` accepts: the fixed columns, each differing config key, and `f1:LABEL`."""
    return [*COLUMNS, *keys, *(f"f1:{label}" for label in labels)]


def sort_entries(entries: list[Entry], column: str, keys: Sequence[str]) -> list[Entry]:
    """Scores high first, wall time short first, text in order; a row without the value last."""
    labels = labels_of(entries)
    if column not in sort_keys(keys, labels):
        raise InputError(f"--sort: unknown column '{column}'; one of {', '.join(sort_keys(keys, labels))}")

    def value(entry: Entry) -> Any:
        if column.startswith("f1:") and column not in keys:
            return entry.per_class_f1.get(column[3:])
        if column in keys:
            return _sortable(entry.settings.get(column))
        return getattr(entry, column)

    present = [e for e in entries if value(e) is not None]
    absent = [e for e in entries if value(e) is None]
    descending = column in ("macro_f1", "test_macro_f1", "date") or column.startswith("f1:")
    return sorted(present, key=value, reverse=descending) + absent


def _sortable(value: Any) -> tuple[int, float, str] | None:
    """Config values of one key may mix types (a number, null, a list): numbers first in order, then text."""
    key = _sort_value(value)
    if key is None:
        return None
    return (0, key, "") if isinstance(key, float) else (1, 0.0, key)


def to_csv(entries: Sequence[Entry], keys: Sequence[str]) -> str:
    """One row per entry; text a spreadsheet would run as a formula (=, +, -, @) is quoted with a leading '."""
    labels = labels_of(entries)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", "kind", "path", "model", *keys, "macro_f1", "macro_f1_std", *(f"f1:{x}" for x in labels),
                     "test_macro_f1", "wall_s", "date"])
    for entry in entries:
        text = [entry.name, entry.kind, str(entry.path), entry.model,
                *(setting_text(entry, key) for key in keys)]
        numbers = [entry.macro_f1, entry.macro_f1_std, *(entry.per_class_f1.get(x) for x in labels),
                   entry.test_macro_f1, entry.wall_s]
        writer.writerow([*map(_inert, text), *("" if n is None else f"{n:.6g}" for n in numbers),
                         entry.date or ""])
    return buffer.getvalue()


def _inert(text: str) -> str:
    if text[:1] not in ("=", "+", "-", "@", "\t", "\r"):
        return text
    try:
        float(text)
        return text  # a number (-2) is no formula
    except ValueError:
        return "'" + text


def to_json(entries: Sequence[Entry], keys: Sequence[str], skipped: Sequence[Skipped]) -> str:
    return json.dumps({"keys": list(keys), "labels": labels_of(entries),
                       "runs": [record(entry, keys) for entry in entries],
                       "skipped": [{"path": str(s.path), "reason": s.reason} for s in skipped]},
                      indent=1, ensure_ascii=False, allow_nan=False)

