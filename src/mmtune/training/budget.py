"""The time budget (`train.time_budget: 11h30m`) and clean stops on SIGTERM / Ctrl-C."""

from __future__ import annotations

import contextlib
import re
import signal
import time
from types import FrameType

from mmtune.errors import InputError

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")


def parse_duration(text: str, key: str = "train.time_budget") -> float:
    """'11h30m' / '90m' / '45s' / '1d2h' / a plain number of seconds -> seconds."""
    cleaned = text.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", cleaned):
        return float(cleaned)
    parts = _PART.findall(cleaned)
    if not parts or "".join(n + u for n, u in parts) != cleaned:
        raise InputError(f"{key}: cannot read duration '{text}' (examples: 11h30m, 90m, 3600)")
    return sum(float(number) * _UNITS[unit] for number, unit in parts)


class TimeBudget:
    """Says when to stop so that the next evaluation and save still fit before the deadline.

    The reserve is the slowest evaluation+save seen so far plus two of the slowest steps: being
    a little early costs a few minutes, being late costs the checkpoint when the session is killed.
    """

    def __init__(self, seconds: float | None, started: float | None = None) -> None:
        self.seconds = seconds
        self.started = time.monotonic() if started is None else started
        self.slowest_step = 0.0
        self.slowest_eval_and_save = 0.0

    def record_step(self, seconds: float) -> None:
        self.slowest_step = max(self.slowest_step, seconds)

    def record_eval_and_save(self, seconds: float) -> None:
        self.slowest_eval_and_save = max(self.slowest_eval_and_save, seconds)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

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
