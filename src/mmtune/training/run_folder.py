"""The output folder of a command that writes a run: created safely, and held by one command at a time.

`mmtune.lock` in the folder names the holder (pid, host, start time) while a `train` or `cv` runs there.
The lock itself is `fcntl.flock` on that file: the kernel drops it when the holder ends, however it ends,
so a lock file left behind by a killed process is stale by construction and the next command takes it over.
Under torchrun / accelerate launch only the main process locks: the other ranks are the same run.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmtune.errors import InputError
from mmtune.outputs import check_run_dir

log = logging.getLogger(__name__)

LOCK_FILE = "mmtune.lock"


def make_run_dir(run_dir: Path) -> None:
    """Create output_dir (and its parents); a file in its place is bad input, not a traceback."""
    check_run_dir(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"output_dir: cannot create {run_dir} ({exc.strerror or exc})") from None


@contextlib.contextmanager
def locked(run_dir: Path, processes: Any) -> Iterator[None]:
    """Hold run_dir's lock for the body; `processes` is the Accelerator / PartialState of this run.

    A refused lock raises InputError on every rank (each would otherwise wait for the main one forever)."""
    handle, refused = None, None
    if processes.is_main_process:
        try:
            handle = _acquire(run_dir)
        except InputError as exc:
            refused = str(exc)
    if processes.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        refused = broadcast_object_list([refused])[0]
    if refused is not None:
        raise InputError(refused)
    try:
        yield
    finally:
        if handle is not None:
            _release(run_dir, handle)


def _acquire(run_dir: Path) -> int:
    path = run_dir / LOCK_FILE
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise InputError(f"output_dir: cannot write {path} ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise InputError(f"output_dir: cannot lock {path} ({exc.strerror})") from None
            raise InputError(f"output_dir: {run_dir} is in use by another mmtune command ({_describe(holder)}); "
                             "wait for it to end or set another output_dir") from None
        # Why: the holder removes the file when it ends; a lock taken on the removed file guards nothing.
        if _is_current(fd, path):
            break
        os.close(fd)
    previous = _read(fd)
    if previous:
        log.warning(f"{path}: taking over the lock left by {_describe(previous)}, which no longer runs")
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    try:  # why an InputError: under a launcher the other ranks learn of it by the broadcast, rather than hang
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
    except OSError as exc:
        os.close(fd)
        raise InputError(f"output_dir: cannot write {path} ({exc.strerror})") from None
    return fd


def _release(run_dir: Path, fd: int) -> None:
    # Removed while still locked: a command that opens the file from now on gets a new one.
    with contextlib.suppress(FileNotFoundError):
        (run_dir / LOCK_FILE).unlink()
    os.close(fd)


def _is_current(fd: int, path: Path) -> bool:
    try:
        now = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)


def _read(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (ValueError, RecursionError):  # why: edited or cut short; the lock holds, only the name is unknown
        return {"pid": "unknown"}
    return data if isinstance(data, dict) else {"pid": "unknown"}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "pid unknown, starting"
    where = f" on host {holder['host']}" if holder.get("host") else ""
    since = f" since {holder['since']}" if holder.get("since") else ""
    return f"pid {holder.get('pid', 'unknown')}{where}{since}"
