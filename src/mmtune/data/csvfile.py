"""Strict CSV: every physical line accounted for, so a broken quote cannot swallow rows unseen.

Read through `mmtune.data.textfile` (strict UTF-8, line and byte offset in errors). Rows keep the line
they start on; a row must have the header's width; quoting is strict (`"a" b` is an error, not `a" b`);
a quote that runs to the end of the file, or over a line that reads as a row of its own, names the
line it was opened on. Fields may span lines inside quotes (captions do).

`CsvRows` streams a file (data files, folds); `read_table` reads a small table whole (prediction files,
gold labels), with rows by column name: every CSV mmtune reads goes through one of the two.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from mmtune.data.textfile import Line, iter_lines
from mmtune.errors import InputError

# A table's cells are ids, labels and numbers: a field this long is a runaway quote or not a table at all.
TABLE_MAX_FIELD = 131_072


class CsvRows:
    """The records of a CSV file with the line each starts on, every physical line accounted for.

    Why not csv.DictReader alone: a quote that is never closed makes one field of the rest of the file,
    and short rows are padded with None, both silently. Here a row's field count must match the
    header, quoting is strict, and a quoted field that spans lines must not contain what reads as
    a row of its own (a missing closing quote that swallowed the rows after it).
    """

    def __init__(self, path: Path, what: str = "data file", max_field: int | None = None) -> None:
        # Captions with long OCR text exceed csv's default 128 KiB field limit; `max_field` is checked here instead.
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
        self.path = path
        self.max_field = max_field
        self._lines = iter_lines(path, what, split_cr=True)
        self._taken: list[Line] = []
        self._reader = csv.reader(self._feed(), strict=True)
        self._width = 0
        self._row_test: Callable[[list[str]], bool] = _any_row

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
        if self._taken and (swallowed := self._swallowed()) is not None:
            return swallowed
        if "unexpected end of data" in str(exc):
            return InputError(f"{self.path}:{start}: a quoted field opened on line {start} is never closed "
                              "(it runs to the end of the file); is a closing quote missing?")
        return InputError(f"{self.path}:{start}: malformed CSV ({exc})")

    def header(self, strip: bool = True) -> list[str]:
        """The column names; `strip=False` keeps them as written (a label with spaces names a `p_` column)."""
        first = self._next()
        if first is None:
            raise InputError(f"{self.path}: empty file (no header row)")
        self._width = len(first[1])
        return [name.strip() for name in first[1]] if strip else first[1]

    def records(self, row_test: Callable[[list[str]], bool] | None = None) -> Iterator[tuple[int, list[str]]]:
        """(first line, fields) of every row after the header. A line inside a quoted field that splits into
        the header's width and passes `row_test` (default: any) is a row swallowed by a missing quote."""
        self._row_test = row_test or _any_row
        while (record := self._next()) is not None:
            start, fields = record
            if (swallowed := self._swallowed()) is not None:
                raise swallowed
            if len(fields) != self._width:
                raise InputError(f"{self.path}:{start}: {len(fields)} fields, but the header has {self._width} "
                                 "columns")
            if self.max_field is not None and (longest := max(map(len, fields), default=0)) > self.max_field:
                raise InputError(f"{self.path}:{start}: a field of {longest} characters, over the "
                                 f"{self.max_field} a cell of this file may hold")
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
        try:
            fields = next(csv.reader([text], strict=True), [])
        except csv.Error:
            return False
        return self._width > 0 and len(fields) == self._width and self._row_test(fields)


def _any_row(fields: list[str]) -> bool:
    return True


def read_table(path: str | Path, what: str = "CSV file", id_column: str | None = None
               ) -> tuple[list[str], list[tuple[str, dict[str, str]]]]:
    """The header and (`file:line`, row by column name) pairs of a small CSV table, read strictly (`CsvRows`,
    cells up to TABLE_MAX_FIELD). A column named twice, and with `id_column` an empty id, name the file/line."""
    path = Path(path)
    rows = CsvRows(path, what, max_field=TABLE_MAX_FIELD)
    header = rows.header(strip=False)
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise InputError(f"{path}: column '{repeated[0]}' appears twice in the header")
    table = []
    for line, fields in rows.records():
        row = dict(zip(header, fields))
        if id_column is not None and id_column in row and not row[id_column].strip():
            raise InputError(f"{path}:{line}: empty id")
        table.append((f"{path}:{line}", row))
    return header, table
