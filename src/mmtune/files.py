"""Opening files that come from other people: only regular files, and a FIFO never blocks the opener.

The lowest layer (like errors.py): config files, data files and images open through it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def file_kind(mode: int) -> str:
    """What a stat mode is, in words."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def open_regular(path: Path) -> int:
    """A read-only descriptor of `path`, refused unless it is a regular file.

    Why O_NONBLOCK: opening a FIFO for reading otherwise waits for a writer; the fstat after the
    open (not a stat before it) decides, so a file swapped in between cannot slip through.
    FileNotFoundError passes through; other failures are OSError.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise
    except OSError:
        # A socket cannot be opened at all (ENXIO): say what it is rather than the errno's words.
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise IsNotRegular(file_kind(mode)) from None
        raise
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise IsNotRegular(file_kind(mode))
    return fd


class IsNotRegular(OSError):
    """`open_regular` met a FIFO, device, socket or folder; the message says which."""


def read_regular(path: Path) -> bytes:
    """The bytes of a regular file (a FIFO, device or folder is IsNotRegular, never read)."""
    with os.fdopen(open_regular(path), "rb") as handle:
        return handle.read()
