"""A data file written back with one more text field per post, in the format it was read in (`mmtune describe`).

Every row of the input comes out, in order, with everything it held (unknown keys, NaN as written, a repeated
id), plus `field`: the value for its row (`Record.row`, as the readers number rows) or "" for a row that has
none (a skipped post). A field the row already has is replaced. The file is written atomically.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmtune.config import ColumnsConfig
from mmtune.data.csvfile import CsvRows
from mmtune.data.readers import csv_row_test, detect_format
from mmtune.data.textfile import JsonError, NonFinite, RepeatedKeys, iter_lines, loads, read_text
from mmtune.errors import InputError, lone_surrogate
from mmtune.outputs import atomic_open


def write_with_field(path: Path, out: Path, fmt: str, columns: ColumnsConfig, field: str,
                     values: Mapping[int, str]) -> int:
    """Write `path` with `field` added to every row into `out`; returns how many rows already had the field."""
    writer = {"vimmsd": _json_text, "jsonl": _jsonl_text, "csv": _csv_text}[detect_format(path, fmt)]
    try:
        text, replaced = writer(path, columns, field, values)
    except RecursionError:
        raise InputError(f"{path}: a row nested too deeply to write back") from None
    with atomic_open(out, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
    return replaced


def _json_text(path: Path, columns: ColumnsConfig, field: str, values: Mapping[int, str]) -> tuple[str, int]:
    data = _parse(read_text(path), path)
    keyed = isinstance(data, (dict, RepeatedKeys))
    pairs = data.pairs if isinstance(data, RepeatedKeys) else list(data.items()) if keyed else list(enumerate(data))
    rows, replaced = [], 0
    for row, (key, value) in enumerate(pairs, start=1):
        replaced += field in value
        value[field] = values.get(row, "")
        rows.append(f"{_encode(key)}: {_encode(value)}" if keyed else _encode(value))
    inside = ",\n ".join(rows)
    return ("{\n " + inside + "\n}\n") if keyed else ("[\n " + inside + "\n]\n"), replaced


def _jsonl_text(path: Path, columns: ColumnsConfig, field: str, values: Mapping[int, str]) -> tuple[str, int]:
    lines, replaced = [], 0
    for line in iter_lines(path):
        if not line.text.strip():
            continue
        value = _parse(line.text, path)
        replaced += field in value
        value[field] = values.get(line.number, "")
        lines.append(_encode(value) + "\n")
    return "".join(lines), replaced


def _csv_text(path: Path, columns: ColumnsConfig, field: str, values: Mapping[int, str]) -> tuple[str, int]:
    rows = CsvRows(path)
    header = rows.header(strip=False)
    stripped = [name.strip() for name in header]
    row_test = csv_row_test(path, stripped, columns)
    at = stripped.index(field) if field in stripped else None
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header if at is not None else [*header, field])
    replaced = 0
    for start, fields in rows.records(row_test=row_test):
        value = values.get(start, "")
        if at is None:
            fields = [*fields, value]
        else:
            replaced += 1
            fields[at] = value
        writer.writerow(fields)
    return buffer.getvalue(), replaced


def _parse(text: str, path: Path) -> Any:
    try:
        return loads(text)
    except JsonError as exc:  # read once already; changed since?
        raise InputError(f"{path}: {exc.at()}") from None


def _encode(value: Any) -> str:
    """JSON text of a parsed value: NaN / Infinity as the file wrote them, lone surrogates kept as escapes."""
    if isinstance(value, NonFinite):
        return value.token
    if isinstance(value, RepeatedKeys):  # the rows' own objects have none (the readers refuse them)
        value = dict(value.pairs)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_encode(str(key))}: {_encode(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_encode(item) for item in value) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=lone_surrogate(value) is not None)
    return json.dumps(value)
