"""The time budget (`train.time_budget: 11h30m`) and clean stops on SIGTERM / Ctrl-C.

The budget is the whole process's wall time, counted from the moment the process started: start-up,
imports, data loading and the frozen towers' encoding pass spend it as training does (a Kaggle session or a
job scheduler kills the process, not the training loop).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import mmtune

_clock_started: float | None = None  # set by `budget_clock` while a call from Python code runs


@contextlib.contextmanager
def budget_clock(started: float | None = None) -> Iterator[None]:
    """Budgets made inside count from `started` (default: now) instead of the process start.

    Why: a command is a process, but a notebook kernel lives for hours; `mmtune.api` calls count from the call,
    and every fold of an `api.cv` shares that one clock as the folds of `mmtune cv` share the process's."""
    global _clock_started
    previous, _clock_started = _clock_started, time.monotonic() if started is None else started
    try:
        yield
    finally:
        _clock_started = previous


def budget_started() -> float:
    """Where time budgets count from: the enclosing `budget_clock`, else the process start."""
    return process_started() if _clock_started is None else _clock_started


def process_started() -> float:
    """When this process started, on the `time.monotonic()` clock.

    Linux: the start time the kernel records (/proc/self/stat, in clock ticks since boot) against the clock
    since boot. Elsewhere, or when /proc cannot be read: the moment `mmtune` was first imported.
    """
    age = _process_age() if sys.platform.startswith("linux") else None
    return mmtune.IMPORTED_AT if age is None else time.monotonic() - age


def _process_age() -> float | None:
    try:
        stat = Path("/proc/self/stat").read_bytes()
        # The command name (field 2) sits in parentheses and may hold spaces: count fields after the last ')'.
        ticks = int(stat[stat.rindex(b")") + 2:].split()[19])  # field 22, starttime
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    # The start time counts whole ticks: a process a few milliseconds old may read as slightly negative.
    return max(0.0, age) if age > -1.0 else None


class TimeBudget:
    """Says when to stop so that the next evaluation and save still fit before the deadline.

    The reserve is the slowest evaluation+save seen so far plus two of the slowest steps: being
    a little early costs a few minutes, being late costs the checkpoint when the session is killed.
    """

    def __init__(self, seconds: float | None, started: float | None = None) -> None:
        self.seconds = seconds
        self.started = budget_started() if started is None else started
        self.slowest_step = 0.0
        self.slowest_eval_and_save = 0.0

    def record_step(self, seconds: float) -> None:
        self.slowest_step = max(self.slowest_step, seconds)

    def record_eval_and_save(self, seconds: float) -> None:
        self.slowest_eval_and_save = max(self.slowest_eval_and_save, seconds)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining(self) -> float | None:
        return None if self.seconds is None else self.seconds - self.elapsed()

    def should_stop(self) -> bool:
        if self.seconds is None:
            return False
        reserve = self.slowest_eval_and_save + 2 * self.slowest_step
        return self.elapsed() + reserve >= self.seconds


class StopSignals:
    """Turns SIGTERM and SIGINT into a flag the loop checks between steps (then saves and exits)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            # Outside the main thread (e.g. a notebook worker) handlers cannot be set: run without them.
            with contextlib.suppress(ValueError):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C means now
        self.received = signum
