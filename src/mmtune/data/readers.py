"""Readers: ViMMSD JSON dict (or a JSON list), JSONL and CSV files -> raw records, in file order.

A record is what a row says, before any check: the checks (faults) live in `mmtune.data.checks`.
JSONL and CSV are read line by line; a JSON document has to be parsed whole, which keeps memory
proportional to the metadata (captions and names), never to pixels.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmtune.config import ColumnsConfig
from mmtune.errors import InputError

FORMATS_BY_SUFFIX = {".json": "vimmsd", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


@dataclass
class Record:
    """One row as the file gives it. `row` is 1-based: the line (JSONL, CSV) or position (JSON)."""

    row: int
    id: str
    images: list[str]
    text: str
    extra: dict[str, str] = field(default_factory=dict)
    label: str | None = None
    has_image_field: bool = True


def detect_format(path: Path, fmt: str = "auto") -> str:
    if fmt != "auto":
        return fmt
    try:
        return FORMATS_BY_SUFFIX[path.suffix.lower()]
    except KeyError:
        known = ", ".join(FORMATS_BY_SUFFIX)
        raise InputError(
            f"{path}: cannot tell the format from the extension (known: {known}); set data.format"
        ) from None


def iter_records(path: str | Path, columns: ColumnsConfig, fmt: str = "auto") -> Iterator[Record]:
    """Yield the records of a data file in file order; malformed files raise InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: data file not found" if not path.exists() else f"{path}: not a file")
    reader = {"vimmsd": _iter_json, "jsonl": _iter_jsonl, "csv": _iter_csv}[detect_format(path, fmt)]
    yield from reader(path, columns)


# ----------------------------------------------------------------------------------------------
# JSON: the ViMMSD dict {"<id>": {...}} or a list [{"id": ...}, ...]


class _PairsDict(dict):
    """A dict that remembers every (key, value) pair, so duplicate ids are not silently merged."""

    pairs: list[tuple[str, Any]]


def _keep_pairs(pairs: list[tuple[str, Any]]) -> _PairsDict:
    result = _PairsDict(pairs)
    result.pairs = pairs
    return result


def _iter_json(path: Path, columns: ColumnsConfig) -> Iterator[Record]:
    try:
        with path.open("r", encoding="utf-8-sig") as handle:
            data = json.load(handle, object_pairs_hook=_keep_pairs)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno} ({exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    if isinstance(data, _PairsDict):
        for row, (key, value) in enumerate(data.pairs, start=1):
            yield _record_from_mapping(path, row, value, columns, default_id=key)
    elif isinstance(data, list):
        for row, value in enumerate(data, start=1):
            yield _record_from_mapping(path, row, value, columns, default_id=None)
    else:
        raise InputError(f"{path}: expected a JSON object keyed by id or a list of posts, got {type(data).__name__}")


def _iter_jsonl(path: Path, columns: ColumnsConfig) -> Iterator[Record]:
    with path.open("r", encoding="utf-8-sig") as handle:
        try:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line, object_pairs_hook=_keep_pairs)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}:{line_number}: invalid JSON ({exc.msg})") from None
                yield _record_from_mapping(path, line_number, value, columns, default_id=None)
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _record_from_mapping(
    path: Path, row: int, value: Any, columns: ColumnsConfig, default_id: str | None
) -> Record:
    where = f"{path}: post '{default_id}'" if default_id is not None else f"{path}: row {row}"
    if not isinstance(value, dict):
        raise InputError(f"{where}: expected an object with the post's fields, got {type(value).__name__}")
    post_id = default_id
    if post_id is None:
        if columns.id not in value or value[columns.id] is None:
            raise InputError(f"{where}: no '{columns.id}' field (data.columns.id)")
        post_id = _scalar_text(value[columns.id], where, columns.id)
    images = _image_names(value.get(columns.image), where, columns.image)
    return Record(
        row=row,
        id=post_id,
        images=images,
        text=_scalar_text(value.get(columns.text), where, columns.text),
        extra={name: _scalar_text(value.get(name), where, name) for name in columns.extra_text},
        label=_label(value.get(columns.label), where, columns.label),
        has_image_field=columns.image in value,
    )


def _image_names(value: Any, where: str, key: str) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return [item for item in value if item]
    raise InputError(f"{where}: '{key}' must be an image name or a list of names, got {type(value).__name__}")


def _scalar_text(value: Any, where: str, key: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InputError(f"{where}: '{key}' must be text, got {type(value).__name__}")
    return str(value)


def _label(value: Any, where: str, key: str) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _scalar_text(value, where, key).strip()


# ----------------------------------------------------------------------------------------------
# CSV


def _iter_csv(path: Path, columns: ColumnsConfig) -> Iterator[Record]:
    # Captions with long OCR text exceed csv's default 128 KiB field limit.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with path.open("r", encoding="utf-8-sig", newline="") as handle:
        try:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            required = {"data.columns.id": columns.id, "data.columns.image": columns.image,
                        "data.columns.text": columns.text}
            required |= {f"data.columns.extra_text ({name})": name for name in columns.extra_text}
            for key, name in required.items():
                if name not in header:
                    raise InputError(f"{path}: no column '{name}' ({key}); the header has: {', '.join(header)}")
            for row in reader:
                line = reader.line_num
                if None in row:
                    raise InputError(f"{path}:{line}: more fields than the header has columns")
                post_id = (row[columns.id] or "").strip()
                if not post_id:
                    raise InputError(f"{path}:{line}: empty id (data.columns.id = '{columns.id}')")
                yield Record(
                    row=line,
                    id=post_id,
                    images=[n.strip() for n in (row[columns.image] or "").split(columns.image_sep) if n.strip()],
                    text=row[columns.text] or "",
                    extra={name: row[name] or "" for name in columns.extra_text},
                    label=(row.get(columns.label) or "").strip() or None,
                )
        except csv.Error as exc:
            raise InputError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not UTF-8 text (byte {exc.start})") from None
