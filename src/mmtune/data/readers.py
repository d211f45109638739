"""Readers: ViMMSD JSON dict (or a JSON list), JSONL and CSV files -> raw records, in file order.

A record is what a row says, before any check: the checks (faults) live in `mmtune.data.checks`.
JSONL and CSV are read line by line; a JSON document has to be parsed whole, which keeps memory
proportional to the metadata (captions and names), never to pixels.
"""

from __future__ import annotations

import csv
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmtune.config import ColumnsConfig
from mmtune.data.textfile import (
    JsonError,
    Line,
    RepeatedKeys,
    check_file,
    describe,
    first_repeated_key,
    iter_lines,
    loads,
    read_text,
)
from mmtune.errors import InputError

FORMATS_BY_SUFFIX = {".json": "vimmsd", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
# An image cell as rows write it: no space, ending in an extension (`a.jpg`, `x.png;y.webp`).
_FILE_NAME = re.compile(r"\S+\.[A-Za-z0-9]{2,5}")


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
    where = f"{path}: post '{default_id}'" if default_id is not None else f"{path}: row {row}"
    if isinstance(value, RepeatedKeys):
        raise InputError(f"{where}: the key '{value.repeated}' appears twice in the post; which one counts?")
    if not isinstance(value, dict):
        raise InputError(f"{where}: expected an object with the post's fields, got {describe(value)}")
    if (nested := first_repeated_key(value)) is not None:
        raise InputError(f"{where}: the key '{nested}' appears twice in one object")
    post_id = default_id
    if post_id is None:
        if columns.id not in value or value[columns.id] is None:
            raise InputError(f"{where}: no '{columns.id}' field (data.columns.id)")
        post_id = _scalar_text(value[columns.id], where, columns.id)
    if not post_id.strip():
        raise InputError(f"{where}: empty id")
    images = _image_names(value.get(columns.image), where, columns.image)
    label, label_problem = _label(value.get(columns.label), columns.label)
    return Record(
        row=row,
        id=post_id,
        images=images,
        text=_scalar_text(value.get(columns.text), where, columns.text),
        extra={name: _scalar_text(value.get(name), where, name) for name in columns.extra_text},
        label=label,
        has_image_field=columns.image in value,
        label_problem=label_problem,
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
        return value.strip() or None, None
    return None, f"'{key}' is {describe(value)}, not text: labels are strings"


# ----------------------------------------------------------------------------------------------
# CSV


def _iter_csv(path: Path, columns: ColumnsConfig) -> Iterator[Record]:
    # Captions with long OCR text exceed csv's default 128 KiB field limit.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    rows = _CsvRows(path)
    header = rows.header()
    index = _column_index(path, header, columns)
    for start, fields in rows.records(key_columns=(index[columns.id], index[columns.image])):
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


class _CsvRows:
    """The records of a CSV file with the line each starts on, every physical line accounted for.

    Why not csv.DictReader alone: a quote that is never closed makes one field of the rest of the file,
    and short rows are padded with None, both silently. Here a row's field count must match the
    header, quoting is strict, and a quoted field that spans lines must not contain what reads as
    a row of its own (a missing closing quote that swallowed the rows after it).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lines = iter_lines(path, split_cr=True)
        self._taken: list[Line] = []
        self._reader = csv.reader(self._feed(), strict=True)
        self._width = 0
        self._keys: tuple[int, int] | None = None

    def _feed(self) -> Iterator[str]:
        for line in self._lines:
            self._taken.append(line)
            yield line.text

    def _next(self) -> tuple[int, list[str]] | None:
        """The next non-blank record and its first line; None at the end of the file."""
        while True:
            self._taken = []
            try:
                fields = next(self._reader)
            except StopIteration:
                return None
            except csv.Error as exc:
                raise self._malformed(exc) from None
            if fields and not (len(fields) == 1 and not fields[0].strip()):
                return self._taken[0].number, fields

    def _malformed(self, exc: csv.Error) -> InputError:
        start = self._taken[0].number if self._taken else "?"
        if self._taken and self._keys is not None and (swallowed := self._swallowed()) is not None:
            return swallowed
        if "unexpected end of data" in str(exc):
            return InputError(f"{self.path}:{start}: a quoted field opened on line {start} is never closed "
                              "(it runs to the end of the file); is a closing quote missing?")
        return InputError(f"{self.path}:{start}: malformed CSV ({exc})")

    def header(self) -> list[str]:
        first = self._next()
        if first is None:
            raise InputError(f"{self.path}: empty file (no header row)")
        self._width = len(first[1])
        return [name.strip() for name in first[1]]

    def records(self, key_columns: tuple[int, int]) -> Iterator[tuple[int, list[str]]]:
        """(first line, fields) of every row after the header. `key_columns`: where the id and image are."""
        self._keys = key_columns
        while (record := self._next()) is not None:
            start, fields = record
            if (swallowed := self._swallowed()) is not None:
                raise swallowed
            if len(fields) != self._width:
                raise InputError(f"{self.path}:{start}: {len(fields)} fields, but the header has {self._width} "
                                 "columns")
            yield start, fields

    def _swallowed(self) -> InputError | None:
        """The error for a quoted field that ran over a line which reads as a row of its own, if one did."""
        start = self._taken[0].number
        for line in self._taken[1:]:
            if self._reads_as_row(line.text):
                return InputError(
                    f"{self.path}:{start}: a quoted field opened on line {start} runs on over line {line.number}, "
                    "which reads as a row of its own; is a closing quote missing?")
        return None

    def _reads_as_row(self, text: str) -> bool:
        """Whether one physical line is, alone, a complete row: the header's width, an id and an image field
        without spaces, the image ending like a file name. Deliberately strict, since a caption may span
        lines: prose ("a, b, c") does not pass, and a swallowed row almost always breaks strict quoting too."""
        try:
            fields = next(csv.reader([text], strict=True), [])
        except csv.Error:
            return False
        if len(fields) != self._width or self._keys is None:
            return False
        post_id, image = (fields[i] for i in self._keys)
        return bool(post_id) and not any(c.isspace() for c in post_id) and _FILE_NAME.fullmatch(image) is not None
