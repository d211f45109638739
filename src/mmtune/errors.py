"""The one exception type that the CLI turns into a single line and exit code 2, and how its messages name values."""

from __future__ import annotations

import math
import re
from typing import Any

_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
_SHOWN = 40  # characters of a value shown in a message


class InputError(ValueError):
    """Bad input or configuration: the message names the file, key or row, on one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


def describe(value: Any) -> str:
    """A value as messages name it, in the words of JSON and YAML, never a Python type name: `null`, `true`,
    `a number (3)`, `NaN`, `text 'x'`, `a list`, `an object`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return _NON_FINITE[repr(value)]
    if isinstance(value, (int, float)):
        try:
            return f"a number ({_short(repr(value))})"
        except ValueError:  # an integer over Python's 4300-digit limit for text
            return "a number with too many digits"
    if isinstance(value, str):
        return f"text {_short(repr(value))}"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"the value {_short(repr(str(value)))}"  # e.g. a YAML date


# ---- lone surrogates: escapes (JSON `"\\ud83d"`, YAML `"\\ud83d"`) of half a character, e.g. an emoji cut off

SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate(text: str) -> str | None:
    """Where `text` holds a lone surrogate, e.g. `\\ud83d at character 4`; None for valid Unicode.

    Why it matters: such text passes json.loads and YAML but cannot be written as UTF-8 (a CSV, a report)
    or handed to a tokenizer, so it fails far from the file it came from.
    """
    found = SURROGATE.search(text)
    return None if found is None else f"\\u{ord(found.group()):04x} at character {found.start() + 1}"


def shown(text: str) -> str:
    """`text` safe to print or write as UTF-8: lone surrogates as escapes such as `\\ud800`."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _short(text: str) -> str:
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."
