"""Readers: ViMMSD JSON dict (or a JSON list), JSONL and CSV files -> raw records, in file order.

A record is what a row says, before any check: the checks (faults) live in `mmtune.data.checks`.
JSONL and CSV are read line by line; a JSON document has to be parsed whole, which keeps memory
proportional to the metadata (captions and names), never to pixels.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmtune.config import ColumnsConfig
from mmtune.data.csvfile import CsvRows
from mmtune.data.textfile import (
    JsonError,
    RepeatedKeys,
    check_file,
    describe,
    first_repeated_key,
    iter_lines,
    loads,
    read_text,
    replace_surrogates,
)
from mmtune.errors import InputError, lone_surrogate, shown

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
    label_problem: str | None = None  # a label that is not text (3, NaN, true, a list): the post's bad_label fault
    text_problem: str | None = None  # text fields with lone surrogates (replaced): the post's invalid_unicode fault


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
    path = check_file(Path(path))
    reader = {"vimmsd": _iter_json, "jsonl": _iter_jsonl, "csv": _iter_csv}[detect_format(path, fmt)]
    yield from reader(path, columns)


# ----------------------------------------------------------------------------------------------
# JSON: the ViMMSD dict {"<id>": {...}} or a list [{"id": ...}, ...]


def _iter_json(path: Path, columns: ColumnsConfig) -> Iterator[Record]:
    try:
        data = loads(read_text(path))
    except JsonError as exc:
        raise InputError(f"{path}: {exc.at()}") from None
    if isinstance(data, (dict, RepeatedKeys)):
        # Every pair, repeated ids included: the checks report a repeat instead of merging it away.
        pairs = data.pairs if isinstance(data, RepeatedKeys) else list(data.items())
        for row, (key, value) in enumerate(pairs, start=1):
            yield _record_from_mapping(path, row, value, columns, default_id=key)
    elif isinstance(data, list):
        for row, value in enumerate(data, start=1):
            yield _record_from_mapping(path, row, value, columns, default_id=None)
    else:
        raise InputError(f"{path}: expected a JSON object keyed by id or a list of posts, got {describe(data)}")


def _iter_jsonl(path: Path, columns: ColumnsConfig) -> Iterator[Record]:
    for line in iter_lines(path):
        if not line.text.strip():
            continue
        try:
            value = loads(line.text)
        except JsonError as exc:
            raise InputError(f"{path}:{line.number}: {exc.short()}") from None
        yield _record_from_mapping(path, line.number, value, columns, default_id=None)


def _record_from_mapping(
    path: Path, row: int, value: Any, columns: ColumnsConfig, default_id: str | None
) -> Record:
    where = f"{path}: post '{shown(default_id)}'" if default_id is not None else f"{path}: row {row}"
    if isinstance(value, RepeatedKeys):
        raise InputError(f"{where}: the key '{shown(value.repeated)}' appears twice in the post; which one counts?")
    if not isinstance(value, dict):
        raise InputError(f"{where}: expected an object with the post's fields, got {describe(value)}")
    if (nested := first_repeated_key(value)) is not None:
        raise InputError(f"{where}: the key '{shown(nested)}' appears twice in one object")
    post_id = default_id
    if post_id is None:
        if columns.id not in value or value[columns.id] is None:
            raise InputError(f"{where}: no '{columns.id}' field (data.columns.id)")
        post_id = _scalar_text(value[columns.id], where, columns.id)
    if not post_id.strip():
        raise InputError(f"{where}: empty id")
    if (bad := lone_surrogate(post_id)) is not None:
        raise InputError(f"{where}: the id '{shown(post_id)}' is not valid Unicode (a lone surrogate {bad})")
    images = _image_names(value.get(columns.image), where, columns.image)
    label, label_problem = _label(value.get(columns.label), columns.label)
    fields = {name: _scalar_text(value.get(name), where, name) for name in (columns.text, *columns.extra_text)}
    problems = [f"'{name}' has a lone surrogate ({bad})" for name, text in fields.items()
                if (bad := lone_surrogate(text)) is not None]
    fields = {name: replace_surrogates(text) for name, text in fields.items()}
    return Record(
        row=row,
        id=post_id,
        images=images,
        text=fields[columns.text],
        extra={name: fields[name] for name in columns.extra_text},
        label=label,
        has_image_field=columns.image in value,
        label_problem=label_problem,
        text_problem="; ".join(problems) + ", not valid Unicode: replaced by U+FFFD" if problems else None,
    )


def _image_names(value: Any, where: str, key: str) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return [item for item in value if item]
    got = describe(value) if not isinstance(value, list) else "a list with an item that is not text"
    raise InputError(f"{where}: '{key}' must be an image name or a list of names, got {got}")


def _scalar_text(value: Any, where: str, key: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InputError(f"{where}: '{key}' must be text, got {describe(value)}")
    return str(value)


def _label(value: Any, key: str) -> tuple[str | None, str | None]:
    """(label, problem): a label is text; anything else (3, NaN, true, a list) is a problem, not a class."""
    if value is None:
        return None, None
    if isinstance(value, str):
        if (bad := lone_surrogate(value)) is not None:
            return None, f"'{key}' is '{shown(value)}', not valid Unicode (a lone surrogate {bad})"
        return value.strip() or None, None
    return None, f"'{key}' is {describe(value)}, not text: labels are strings"


# ----------------------------------------------------------------------------------------------
# CSV


def _iter_csv(path: Path, columns: ColumnsConfig) -> Iterator[Record]:
    rows = CsvRows(path)
    header = rows.header()
    index = _column_index(path, header, columns)
    for start, fields in rows.records(row_test=_looks_like_a_row(index[columns.id], index[columns.image])):
        post_id = fields[index[columns.id]].strip()
        if not post_id:
            raise InputError(f"{path}:{start}: empty id (data.columns.id = '{columns.id}')")
        label = fields[index[columns.label]].strip() if columns.label in index else ""
        yield Record(
            row=start,
            id=post_id,
            images=[n.strip() for n in fields[index[columns.image]].split(columns.image_sep) if n.strip()],
            text=fields[index[columns.text]],
            extra={name: fields[index[name]] for name in columns.extra_text},
            label=label or None,
        )


def csv_row_test(path: Path, header: list[str], columns: ColumnsConfig) -> Callable[[list[str]], bool]:
    """What reads as a row of this CSV file (see `_looks_like_a_row`), for others that read it again."""
    index = _column_index(path, header, columns)
    return _looks_like_a_row(index[columns.id], index[columns.image])


def _column_index(path: Path, header: list[str], columns: ColumnsConfig) -> dict[str, int]:
    """Column name -> position, for the columns mmtune reads (the label column is optional)."""
    required = {"data.columns.id": columns.id, "data.columns.image": columns.image,
                "data.columns.text": columns.text}
    required |= {f"data.columns.extra_text ({name})": name for name in columns.extra_text}
    for key, name in required.items():
        if name not in header:
            raise InputError(f"{path}: no column '{name}' ({key}); the header has: {', '.join(header)}")
    used = [*required.values(), columns.label]
    for name in used:
        if header.count(name) > 1:
            raise InputError(f"{path}: the header names column '{name}' {header.count(name)} times; "
                             "which one counts?")
    return {name: header.index(name) for name in used if name in header}


# An image cell as rows write it: no space, ending in an extension (`a.jpg`, `x.png;y.webp`).
_FILE_NAME = re.compile(r"\S+\.[A-Za-z0-9]{2,5}")


def _looks_like_a_row(id_at: int, image_at: int) -> Callable[[list[str]], bool]:
    """Whether a line's fields (already the header's width) read as a post: an id and an image cell without
    spaces, the image ending like a file name. Strict, since a caption may span lines: prose ("a, b, c")
    does not pass, and a row swallowed by a missing quote almost always breaks strict quoting too."""

    def test(fields: list[str]) -> bool:
        post_id, image = fields[id_at], fields[image_at]
        return bool(post_id) and not any(c.isspace() for c in post_id) and _FILE_NAME.fullmatch(image) is not None

    return test
