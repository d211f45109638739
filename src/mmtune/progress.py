"""Progress of long loops (training epochs, feature extraction, TRL's steps): a tqdm bar in a terminal; elsewhere
(a log file, Kaggle's "Save & Run", CI) one line at a steady interval, through logging, so it carries the time,
is written by the main process only and never shares a line with another record."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from mmtune.terminal import in_notebook, interactive

log = logging.getLogger("mmtune.progress")

# Seconds between progress lines outside a terminal; MMTUNE_PROGRESS_SECONDS sets another interval.
DEFAULT_INTERVAL_S = 30.0


def progress(total: int, desc: str, unit: str = "it", initial: int = 0, disable: bool = False,
             delay: float = 0.0) -> Any:
    """A bar for `total` units (a tqdm bar in a terminal or a notebook, a `LineProgress` elsewhere); `delay`:
    seconds before a bar appears (short passes draw nothing); a context manager either way."""
    if not disable and (interactive() or in_notebook()):
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=False, delay=delay, dynamic_ncols=True)
    return LineProgress(total, desc, unit, initial=initial, disable=disable)


def interval_seconds() -> float:
    try:
        value = float(os.environ.get("MMTUNE_PROGRESS_SECONDS", DEFAULT_INTERVAL_S))
    except ValueError:
        return DEFAULT_INTERVAL_S
    return value if value >= 0 else DEFAULT_INTERVAL_S


class LineProgress:
    """`desc: 120/400 batch (30%), 5.13 batch/s, ETA 0:00:54` every interval; a last line at the end when a
    line was written before (a pass shorter than the interval stays silent)."""

    def __init__(self, total: int, desc: str, unit: str = "it", initial: int = 0, disable: bool = False,
                 interval: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.desc, self.unit, self.disable = total, desc, unit, disable
        self.done = self._start = initial
        self.interval = interval_seconds() if interval is None else interval
        self._clock = clock
        self._began = self._last = clock()
        self._written = 0
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.disable and self._clock() - self._last >= self.interval:
            self._write()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.disable and self._written and self.done != self._reported:
            self._write()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def line(self) -> str:
        """The current record."""
        elapsed = self._clock() - self._began
        rate = (self.done - self._start) / elapsed if elapsed > 0 else 0.0
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        text = f"{self.desc}: {self.done}/{self.total} {self.unit}{share}, {rate:.3g} {self.unit}/s"
        if rate > 0 and self.total and self.done < self.total:
            text += f", ETA {_clock_time((self.total - self.done) / rate)}"
        elif self.done >= self.total:
            text += f", {_clock_time(elapsed)} in all"
        return text

    def _write(self) -> None:
        log.info(self.line())
        self._last = self._clock()
        self._written += 1
        self._reported = self.done

    _reported = -1


def _clock_time(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
