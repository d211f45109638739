"""How output looks (mmtune.terminal, mmtune.progress): plain timestamped lines and progress records outside a
terminal, bars in one, the main process only under a launcher, known third-party noise hidden unless -v."""

from __future__ import annotations

import fcntl
import io
import logging
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import warnings

import pytest

from mmtune import progress as progress_module
from mmtune import terminal
from mmtune.progress import LineProgress, progress
from mmtune.terminal import RankFilter, configure_output, log_handler, plain_console, quiet_known_noise

STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (INFO|WARNING|ERROR|DEBUG) ")


@pytest.fixture
def restore_logging():
    """configure_output changes the process's logging: put it back for the other tests."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    noisy = {name: logging.getLogger(name).filters[:] for name in [*terminal._NOISY_LOGGERS, "py.warnings"]}
    environ = dict(os.environ)
    yield
    root.handlers[:], root.level = handlers, level
    for name, filters in noisy.items():
        logging.getLogger(name).filters[:] = filters
    logging.captureWarnings(False)
    os.environ.clear()
    os.environ.update(environ)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_line_record_at_each_interval_with_rate_and_eta(caplog):
    clock = Clock()
    with caplog.at_level(logging.INFO, logger="mmtune.progress"):
        bar = LineProgress(100, "epoch 1", unit="batch", interval=10, clock=clock)
        for _ in range(20):  # 20 batches in 4 s: no line yet
            clock.now += 0.2
            bar.update()
        assert caplog.messages == []
        for _ in range(30):  # 10 s in all
            clock.now += 0.2
            bar.update()
        assert caplog.messages == ["epoch 1: 50/100 batch (50%), 5 batch/s, ETA 0:00:10"]
        clock.now += 10
        bar.update(50)
        bar.close()
        bar.close()
    assert caplog.messages[1:] == ["epoch 1: 100/100 batch (100%), 5 batch/s, 0:00:20 in all"]


def test_a_pass_shorter_than_the_interval_writes_nothing(caplog):
    clock = Clock()
    with caplog.at_level(logging.INFO, logger="mmtune.progress"), LineProgress(5, "x", interval=30, clock=clock) as bar:
        bar.update(5)
    assert caplog.messages == []


def test_a_resumed_epoch_counts_its_rate_from_where_it_started(caplog):
    clock = Clock()
    with caplog.at_level(logging.INFO, logger="mmtune.progress"):
        bar = LineProgress(100, "epoch 2", unit="batch", initial=60, interval=5, clock=clock)
        clock.now += 5
        bar.update(10)
    assert caplog.messages == ["epoch 2: 70/100 batch (70%), 2 batch/s, ETA 0:00:15"]


def test_the_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("MMTUNE_PROGRESS_SECONDS", "2.5")
    assert LineProgress(3, "x").interval == 2.5
    monkeypatch.setenv("MMTUNE_PROGRESS_SECONDS", "soon")
    assert LineProgress(3, "x").interval == progress_module.DEFAULT_INTERVAL_S


@pytest.mark.parametrize(("terminal_", "notebook", "bar"), [(False, False, False), (True, False, True),
                                                           (False, True, True)])
def test_a_terminal_or_a_notebook_gets_a_bar_and_a_log_file_a_line_record(monkeypatch, terminal_, notebook, bar):
    monkeypatch.setattr(progress_module, "interactive", lambda: terminal_)
    monkeypatch.setattr(progress_module, "in_notebook", lambda: notebook)
    drawn = progress(10, "x")
    try:
        assert type(drawn).__module__.startswith("tqdm") == bar and isinstance(drawn, LineProgress) != bar
    finally:
        drawn.close()


def test_a_notebook_is_a_jupyter_kernel(monkeypatch):
    class Shell:
        config = {"IPKernelApp": {}}

    class IPython:
        shell: object = None

        def get_ipython(self):
            return self.shell

    fake = IPython()
    monkeypatch.setitem(sys.modules, "IPython", fake)
    assert not terminal.in_notebook()  # IPython imported, no shell
    fake.shell = Shell()
    assert terminal.in_notebook()


def test_log_lines_outside_a_terminal_carry_the_time_and_do_not_wrap(restore_logging):
    stream = io.StringIO()
    logger = logging.getLogger("mmtune.test_output")
    logger.handlers, logger.propagate = [log_handler(stream)], False
    try:
        logger.warning("x" * 300 + " %s", "end")
    finally:
        logger.handlers, logger.propagate = [], True
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and STAMP.match(lines[0]) and lines[0].endswith("x end"), lines


def test_a_console_outside_a_terminal_does_not_wrap_at_80_columns(monkeypatch, capsys):
    monkeypatch.delenv("RANK", raising=False)
    console = plain_console()
    console.print("word " * 40 + "/a/long/path/" * 10)
    assert len(capsys.readouterr().out.splitlines()) == 1


def test_other_ranks_print_nothing_and_log_only_warnings_with_their_rank(monkeypatch, capsys):
    monkeypatch.setenv("RANK", "1")
    plain_console().print("done (finished): runs/x")
    assert capsys.readouterr().out == ""
    rank_filter = RankFilter(1)
    info = logging.LogRecord("mmtune", logging.INFO, __file__, 1, "epoch 1", None, None)
    warning = logging.LogRecord("mmtune", logging.WARNING, __file__, 1, "cache %s busy", ("x",), None)
    assert not rank_filter.filter(info)
    assert rank_filter.filter(warning) and rank_filter.filter(warning)
    assert warning.getMessage() == "[rank 1] cache x busy"
    assert RankFilter(0).filter(logging.LogRecord("mmtune", logging.INFO, __file__, 1, "epoch 1", None, None))


def test_the_error_line_of_another_rank_names_the_rank(monkeypatch, capsys):
    from mmtune.cli import _report_error

    monkeypatch.setenv("RANK", "1")
    _report_error("data.train: bad")
    assert capsys.readouterr().err == "mmtune: error: [rank 1] data.train: bad\n"


def _noise() -> None:
    logging.getLogger("bitsandbytes.backends.cpu.ops").warning(
        "Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make sure ...", "No module")
    warnings.warn_explicit("`foo` is deprecated", FutureWarning, "lib.py", 1, module="transformers.foo")
    warnings.warn_explicit("'pin_memory' argument is set as true but no accelerator is found", UserWarning,
                           "dataloader.py", 1, module="torch.utils.data.dataloader")


@pytest.mark.parametrize("verbose", [False, True])
def test_known_third_party_noise_is_hidden_unless_verbose(restore_logging, capsys, verbose):
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        configure_output(verbose=verbose)
        _noise()
        logging.getLogger("mmtune.x").warning("a real warning")
    err = capsys.readouterr().err
    assert "a real warning" in err
    for noise in ("gemm_4bit_forward", "`foo` is deprecated", "pin_memory"):
        assert (noise in err) == verbose, err


def test_a_warning_is_one_timestamped_line_without_the_source_line(restore_logging, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        configure_output(verbose=False)
        configure_output(verbose=False)
        warnings.warn_explicit("something odd", UserWarning, __file__, 1, module="somelib")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and STAMP.match(lines[0]), lines
    assert lines[0].endswith(f"WARNING {__file__}:1: UserWarning: something odd"), lines
    assert logging.getLogger("py.warnings").filters.count(terminal.warning_source_dropped) == 1


def test_hiding_the_noise_twice_adds_one_filter(restore_logging):
    quiet_known_noise()
    quiet_known_noise()
    assert len(logging.getLogger("bitsandbytes.backends.cpu.ops").filters) == 1


def test_library_progress_bars_are_off_outside_a_terminal(restore_logging, monkeypatch):
    for name in ("HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS"):
        monkeypatch.delenv(name, raising=False)
    configure_output(verbose=False)  # pytest's stderr is not a terminal
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] == "1"


_SCRIPT = """
import logging, os, time
from mmtune.terminal import configure_output
from mmtune.progress import progress
configure_output(verbose=False)
logging.getLogger("mmtune").info("starting")
with progress(40, "epoch 1", unit="batch") as bar:
    for _ in range(40):
        time.sleep(0.01)
        bar.update()
logging.getLogger("mmtune").info("ended")
print("HF_HUB_DISABLE_PROGRESS_BARS" in os.environ)
"""


def _run_script(terminal_: bool) -> str:
    env = {**os.environ, "MMTUNE_PROGRESS_SECONDS": "0.1"}
    env.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
    if not terminal_:
        result = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stderr + result.stdout
    leader, follower = pty.openpty()
    # A new pseudo-terminal is 0 columns wide, where tqdm draws nothing: size it like a real one.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    process = subprocess.Popen([sys.executable, "-c", _SCRIPT], stdin=follower, stdout=follower, stderr=follower,
                               env=env, close_fds=True)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closes with the process
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=60) == 0
    return b"".join(chunks).decode("utf-8", "replace")


def test_a_log_file_gets_records_and_a_terminal_gets_a_bar():
    logged = _run_script(terminal_=False)
    lines = [line for line in logged.splitlines() if line.strip()]
    assert "\r" not in logged and "\x1b" not in logged
    assert all(STAMP.match(line) for line in lines[:-1]), lines
    assert any(re.search(r"epoch 1: \d+/40 batch \(\d+%\), [\d.]+ batch/s", line) for line in lines), lines
    assert lines[-1] == "True"
    drawn = _run_script(terminal_=True)
    assert re.search(r"\repoch 1: +\d+%", drawn), repr(drawn)  # a carriage-return bar (the pty ends lines \r\n)
    assert not STAMP.search(drawn.replace("\r", "\n"))
    assert drawn.rstrip().endswith("False")  # libraries keep their bars in a terminal


def test_importing_bitsandbytes_prints_nothing_after_configure_output():
    # bitsandbytes logs the line at import on CPUs with AVX512-BF16 and kernels not installed (this sandbox's).
    script = ("from mmtune.terminal import configure_output\nconfigure_output(verbose=False)\n"
              "import bitsandbytes\nfrom bitsandbytes.functional import has_avx512bf16\n"
              "import importlib.util\nprint(has_avx512bf16() and importlib.util.find_spec('kernels') is None)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    if result.stdout.strip() != "True":
        pytest.skip("bitsandbytes says nothing at import on this CPU")
    assert "gemm_4bit_forward" not in result.stderr, result.stderr
