"""Data in the terminal: labels, ids, captions and paths print as typed, never as rich markup (`[/]` raises,
`[link=...]` makes a link), emoji codes or terminal control sequences (ESC sets colours, titles, the clipboard)."""

from __future__ import annotations

import logging
import re

from rich.console import Console
from rich.text import Text

# Controls (tab and newline too: a table cell shows one line), DEL, C1, bidi overrides, lone surrogates (UTF-8
# cannot encode them: printing one raises).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def printable(value: object) -> str:
    """`value` as a string that shows exactly what it holds, unprintable characters as Python escapes (\\x1b)."""
    return _UNPRINTABLE.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), str(value))


def literal(value: object, style: str = "") -> Text:
    """`value` as rich text: printable, and never read as markup."""
    return Text(printable(value), style=style)


def printable_record(record: logging.LogRecord) -> bool:
    """A logging filter: messages name ids, files and labels from the data, so they are made `printable` too."""
    try:
        message = record.getMessage()
    except (TypeError, ValueError):
        return True  # a malformed call: logging reports it when the handler formats the record
    record.msg, record.args = printable(message), ()
    return True


def plain_console(stderr: bool = False) -> Console:
    """A console whose strings are text: paths, config values and overrides in messages are never markup."""
    return Console(stderr=stderr, markup=False, emoji=False)
