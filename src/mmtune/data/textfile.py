"""Raw text of the files mmtune reads (data files, chat data, folds, word lists): one way to do it.

Strict UTF-8: a BOM is dropped, a byte that is not UTF-8 or a NUL byte (UTF-16 files are full of
them) is an error naming the line and byte offset. Only regular files are read, so a FIFO never
blocks and a device is never read without end. JSON is parsed so that nothing is merged or
crashes: an object with a repeated key comes back as `RepeatedKeys` (all its pairs), `NaN` /
`Infinity` / a number too large for a float as `NonFinite`, and nesting too deep for the parser
is a `JsonError`, like any syntax error.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from mmtune.errors import SURROGATE, InputError, lone_surrogate, shown
from mmtune.errors import describe as describe_value
from mmtune.files import IsNotRegular, file_kind, open_regular

BOM = b"\xef\xbb\xbf"
# Every line end the csv module splits on: a lone CR (old Mac files) ends a line as well.
_LONE_CR = re.compile(r"(?<=\r)(?!\n)")


def check_file(path: Path, what: str = "data file") -> Path:
    """`path` when it is a regular file (a link to one counts); else InputError saying what it is."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
        raise InputError(f"{path}: cannot read the {what} ({getattr(exc, 'strerror', None) or exc})") from None
    if not stat.S_ISREG(mode):
        raise InputError(f"{path}: the {what} is {file_kind(mode)}, not a file")
    return path


def file_digest(path: Path) -> str | None:
    """sha256 of a regular file's bytes; None for anything that cannot be read (a FIFO is never opened)."""
    try:
        with os.fdopen(open_regular(path), "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except (OSError, ValueError):
        return None


def _open_file(path: Path, what: str) -> BinaryIO:
    """The file, open for binary reading; InputError (naming `what`) for anything but a readable regular file."""
    check_file(path, what)
    try:
        return os.fdopen(open_regular(path), "rb")
    except IsNotRegular as exc:  # swapped since check_file looked
        raise InputError(f"{path}: the {what} is {exc}, not a file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None


def read_text(path: Path, what: str = "data file") -> str:
    """The whole file as text (strict UTF-8, BOM dropped, no NUL bytes)."""
    with _open_file(path, what) as handle:
        try:
            data = handle.read()
        except OSError as exc:
            raise InputError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    start = len(BOM) if data.startswith(BOM) else 0
    return _decode(path, data[start:], line=1, offset=start)


@dataclass(frozen=True)
class Line:
    number: int  # 1-based
    text: str  # with its line end


def iter_lines(path: Path, what: str = "data file", split_cr: bool = False) -> Iterator[Line]:
    """The file's lines in order, decoded one by one (strict UTF-8, BOM dropped, no NUL bytes).

    `split_cr`: a lone CR also ends a line, as the csv module counts lines.
    """
    with _open_file(path, what) as handle:
        number, offset = 0, 0
        for raw in handle:
            start = len(BOM) if offset == 0 and raw.startswith(BOM) else 0
            text = _decode(path, raw[start:], line=number + 1, offset=offset + start)
            offset += len(raw)
            for piece in _LONE_CR.split(text) if split_cr else (text,):
                if piece:  # a CR at the very end splits off an empty piece, which is no line
                    number += 1
                    yield Line(number, piece)


def _decode(path: Path, data: bytes, line: int, offset: int) -> str:
    """`data` (which starts at byte `offset`, on line `line`) as UTF-8; errors name line and byte."""
    nul = data.find(b"\0")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if offset == 0 and data[:2] in (b"\xff\xfe", b"\xfe\xff"):
            raise InputError(f"{path}: a UTF-16 text file; save it as UTF-8") from None
        if nul == -1 or exc.start < nul:
            where = _position(data, exc.start, line, offset)
            raise InputError(f"{path}: not UTF-8 text: byte 0x{data[exc.start]:02x} at {where}; "
                             "save the file as UTF-8") from None
    if nul != -1:
        raise InputError(f"{path}: a NUL byte at {_position(data, nul, line, offset)}: not a UTF-8 text file "
                         "(UTF-16 or binary?)")
    return text


def _position(data: bytes, index: int, line: int, offset: int) -> str:
    newlines = data.count(b"\n", 0, index)
    return f"line {line + newlines}, byte offset {offset + index}"


# ---- JSON ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RepeatedKeys:
    """A JSON object in which a key appears more than once: every pair, in file order."""

    pairs: list[tuple[str, Any]]
    repeated: str  # the first key (in file order) that appears more than once


@dataclass(frozen=True)
class NonFinite:
    """`NaN`, `Infinity`, `-Infinity` or a number that overflows a float, as written in the file."""

    token: str


class JsonError(Exception):
    """Text that is not JSON mmtune can use; `line`/`column` when the parser knows them."""

    def __init__(self, reason: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.line, self.column = reason, line, column

    def at(self) -> str:
        """The reason with its place in a document, e.g. `invalid JSON at line 3 column 5 (Expecting ',')`."""
        if self.line is None:
            return self.reason
        return f"invalid JSON at line {self.line} column {self.column} ({self.reason})"

    def short(self) -> str:
        """The reason without the place (one JSONL line: the caller names the line)."""
        return f"invalid JSON ({self.reason})" if self.line is not None else self.reason


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any] | RepeatedKeys:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    counts = Counter(key for key, _ in pairs)
    return RepeatedKeys(pairs, next(key for key, n in counts.items() if n > 1))


def _float(text: str) -> float | NonFinite:
    value = float(text)
    return value if math.isfinite(value) else NonFinite(text)


def loads(text: str) -> Any:
    """Parse JSON text; every failure is a JsonError (never RecursionError or a bare ValueError)."""
    try:
        return json.loads(text, object_pairs_hook=_object, parse_constant=NonFinite, parse_float=_float)
    except json.JSONDecodeError as exc:
        raise JsonError(exc.msg, exc.lineno, exc.colno) from None
    except RecursionError:
        raise JsonError("JSON lists/objects nested too deeply") from None
    except ValueError:  # the one other failure: an integer over Python's 4300-digit limit
        raise JsonError("a JSON number with too many digits") from None


def first_repeated_key(value: Any) -> str | None:
    """The first repeated key of any object inside `value` (iterative: the value may be ~1000 levels deep)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, RepeatedKeys):
            return item.repeated
        if isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return None


# ---- lone surrogates: JSON escapes (`"\\ud83d"`, half an emoji cut off) that are no character ----------------

def replace_surrogates(text: str) -> str:
    """`text` with each lone surrogate replaced by U+FFFD (the replacement character)."""
    return SURROGATE.sub("\ufffd", text)


def first_lone_surrogate(value: Any) -> str | None:
    """The first text (a key or a value) inside `value` with a lone surrogate, shown with where it is."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if (where := lone_surrogate(item)) is not None:
                return f"'{shown(item[:40])}' ({where})"
        elif isinstance(item, RepeatedKeys):
            stack.extend(reversed([part for pair in item.pairs for part in pair]))
        elif isinstance(item, dict):
            stack.extend(reversed([part for pair in item.items() for part in pair]))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return None


def describe(value: Any) -> str:
    """A JSON value in words, for messages (never a Python type name): `mmtune.errors.describe`, plus the
    parser's own values (`NaN` as written, an object with a repeated key)."""
    if isinstance(value, NonFinite):
        return value.token
    if isinstance(value, RepeatedKeys):
        return "an object"
    return describe_value(value)
