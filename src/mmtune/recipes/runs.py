"""`mmtune runs [DIR ...]`: the leaderboard of every run, cv folder, ensemble and export folder under DIRs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmtune.errors import InputError
from mmtune.evaluation.leaderboard import Entry, Found, Skipped, discover, read_entry
from mmtune.evaluation.leaderboard_table import (
    Column,
    cells,
    columns,
    differing_settings,
    labels_of,
    sort_entries,
    to_csv,
    to_json,
)
from mmtune.evaluation.predictions import read_gold_labels


@dataclass
class Board:
    entries: list[Entry]
    keys: list[str]  # the config keys that differ between the entries
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return labels_of(self.entries)

    @property
    def columns(self) -> list[Column]:
        return columns(self.keys, self.labels)

    def cells(self, entry: Entry) -> list[tuple[str, Any]]:
        """(text, value to sort by) of each of `columns`."""
        return cells(entry, self.keys, self.labels)

    def csv(self) -> str:
        return to_csv(self.entries, self.keys)

    def json(self) -> str:
        return to_json(self.entries, self.keys, self.skipped)


def read_board(dirs: list[Path], gold: Path | None = None, sort: str = "macro_f1") -> Board:
    """Every entry under `dirs`, read and scored, sorted by `sort`; what cannot be read is skipped with why."""
    found, skipped = discover(dirs or [Path(".")])
    gold_labels = read_gold_labels(gold) if gold is not None else None
    entries = []
    for item in found:
        try:
            entries.append(_export_entry(item) if item.kind == "export" else read_entry(item, gold_labels))
        except InputError as exc:
            skipped.append(Skipped(item.path, str(exc)))
    if not entries:
        where = ", ".join(str(d) for d in dirs or [Path(".")])
        raise InputError(f"{where}: no run, cv folder, ensemble or export folder could be read"
                         + (f" ({len(skipped)} skipped: {skipped[0].path}: {skipped[0].reason})" if skipped else ""))
    keys = differing_settings(entries)
    return Board(sort_entries(entries, sort, keys), keys, skipped)


def _export_entry(found: Found) -> Entry:
    """An export folder: listed with its model and members (it keeps no predictions to score)."""
    from mmtune.serving.bundle import read_manifest

    manifest = read_manifest(found.path)
    model = f"{str(manifest.get('kind', '?'))} export of {len(manifest['members'])} model(s)"
    return Entry(found.name, "export", found.path, model)
