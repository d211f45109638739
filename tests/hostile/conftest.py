"""Hostile inputs: what an adversarial user, a tampered run folder or a killed process hands mmtune.

Every case asserts the README's promise for its family: exit 2 with one `mmtune: error:` line naming
the file, key or row (never a traceback), a named fault for that post, or nothing lost silently.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.training.conftest import demo_small, fusion_config, tiny_models, write_config  # noqa: F401


def run_mmtune(*args: object, timeout: float = 120, cwd: object = None) -> subprocess.CompletedProcess:
    """The real console entry point in a subprocess: what users see, tracebacks included."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "mmtune", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=cwd)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit 2; the last stderr line is the error and stands alone; no traceback anywhere."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == 2, f"exit {result.returncode}: {output}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("mmtune: error: "), result.stderr
    assert lines[-1].count("mmtune: error:") == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[-1], f"{fragment!r} not in {lines[-1]!r}"
    return lines[-1]

