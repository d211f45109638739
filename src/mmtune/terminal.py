"""How mmtune's output looks, in a terminal and in a log file.

Data in the terminal: labels, ids, captions and paths print as typed, never as rich markup (`[/]` raises,
`[link=...]` makes a link), emoji codes or terminal control sequences (ESC sets colours, titles, the clipboard).

Not a terminal (Kaggle's "Save & Run" log, CI, a pipe): log lines carry the time, nothing wraps at 80 columns,
and no carriage-return bars are drawn (mmtune.progress writes a progress line at a steady interval instead).
Under a launcher (torchrun, accelerate launch) only the main process logs and prints; the others' warnings and
errors are prefixed with their rank. Known third-party noise stays hidden unless `-v`.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from typing import TextIO

from rich.console import Console
from rich.logging import RichHandler
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


# Width of a console that is not a terminal: lines a log reader scrolls sideways rather than broken at 80.
LOG_WIDTH = 240


def interactive(stream: TextIO | None = None) -> bool:
    """Whether `stream` (default stderr, where logs and bars go) is a terminal a person watches."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a replaced stream without isatty, or a closed one
        return False


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (mmtune.api in a notebook), where tqdm draws widget bars."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def process_rank() -> int:
    """This process's rank under torchrun / accelerate launch (they set RANK); 0 when run alone."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def plain_console(stderr: bool = False, every_rank: bool = False) -> Console:
    """A console whose strings are text: paths, config values and overrides in messages are never markup.

    Silent on the launcher's other processes unless `every_rank` (results are printed once); outside a terminal
    it neither wraps nor pads to 80 columns."""
    stream = sys.stderr if stderr else sys.stdout
    layout = {} if interactive(stream) else {"width": LOG_WIDTH, "soft_wrap": True}
    return Console(stderr=stderr, markup=False, emoji=False, quiet=not every_rank and process_rank() != 0,
                   **layout)


class RankFilter(logging.Filter):
    """The main process logs everything; another rank only its warnings and errors, prefixed `[rank N]`."""

    def __init__(self, rank: int) -> None:
        super().__init__()
        self.rank = rank

    def filter(self, record: logging.LogRecord) -> bool:
        if self.rank == 0:
            return True
        if record.levelno < logging.WARNING:
            return False
        if not getattr(record, "rank_prefixed", False):  # one record may pass several handlers
            record.msg, record.args, record.rank_prefixed = f"[rank {self.rank}] {record.getMessage()}", (), True
        return True


class CurrentStderrHandler(logging.StreamHandler):
    """Writes each record to `sys.stderr` as it is then: a notebook, a test's capture or the API caller may have
    replaced it since the handler was made (a stream kept from then may be closed)."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        """StreamHandler.__init__ assigns its stream; this handler always follows sys.stderr instead."""


def log_handler(stream: TextIO | None = None) -> logging.Handler:
    """Rich's handler in a terminal; elsewhere one plain line per record, with the time and the level."""
    if interactive(sys.stderr if stream is None else stream):
        handler: logging.Handler = RichHandler(console=plain_console(stderr=True, every_rank=True), show_path=False,
                                               show_time=False)
    else:
        handler = CurrentStderrHandler() if stream is None else logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.addFilter(printable_record)
    handler.addFilter(RankFilter(process_rank()))
    return handler


def configure_output(verbose: bool) -> None:
    """Logging, warnings and third-party progress bars for a command: the one place that decides how they look."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[log_handler()], force=True)
    logging.captureWarnings(True)  # warnings then carry the time and the rank like every other line
    warning_logger = logging.getLogger("py.warnings")
    if warning_source_dropped not in warning_logger.filters:
        warning_logger.addFilter(warning_source_dropped)
    if not interactive():
        # Libraries' own bars (model loading and saving, downloads, dataset maps) are carriage-return lines in a
        # log file. Read when the libraries are imported, after this; huggingface_hub's switch covers transformers'.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    if verbose:
        show_known_noise()  # an earlier command in this process (the API, a notebook) may have hidden it
    else:
        quiet_known_noise()


def warning_source_dropped(record: logging.LogRecord) -> bool:
    """A captured warning on one line: `file:line: Category: message` without the source line Python's
    formatting appends below it (a second line, indented, that quotes the library's code)."""
    try:
        lines = record.getMessage().rstrip().splitlines()
    except (TypeError, ValueError):
        return True
    if len(lines) > 1 and lines[-1].startswith((" ", "\t")):
        lines = lines[:-1]
    record.msg, record.args = "\n".join(lines), ()
    return True


# Messages libraries log or warn on every run that tell a mmtune user nothing they can act on.
_NOISY_LOGGERS = {
    # bitsandbytes 0.50 on AVX512-BF16 CPUs, at import: it cannot fetch a CPU inference kernel from the Hub;
    # mmtune keeps 4-bit layers off that path (compat.keep_bnb_4bit_training_layout).
    "bitsandbytes.backends.cpu.ops": re.compile("Failed to load CPU gemm_4bit_forward"),
}
_NOISY_WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    # torch's DataLoader on a machine without a GPU: pinning is simply skipped.
    (".*pin_memory.*", UserWarning, ""),
    # Libraries announcing their own future API changes: a user of mmtune cannot act on them.
    ("", FutureWarning, r"(?!mmtune\b)"),
)


class _DropMessages(logging.Filter):
    def __init__(self, pattern: re.Pattern[str]) -> None:
        super().__init__()
        self.pattern = pattern

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            return not self.pattern.search(record.getMessage())
        except (TypeError, ValueError):
            return True


def show_known_noise() -> None:
    """Undo `quiet_known_noise`'s logger filters (`-v`: every line the libraries log)."""
    for name in _NOISY_LOGGERS:
        logger = logging.getLogger(name)
        for dropped in [f for f in logger.filters if isinstance(f, _DropMessages)]:
            logger.removeFilter(dropped)


def quiet_known_noise() -> None:
    """Hide the known third-party noise (`-v` keeps it): a filter on the library's own logger (it applies before
    any handler, logging's last-resort printer included) and warning filters by message and category."""
    for name, pattern in _NOISY_LOGGERS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(pattern))
    for message, category, module in _NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
