"""`make wheelhouse` (README, "Kaggle without internet"): mmtune installs from the folder alone, with no index.

Built for THIS machine's platform and Python, with the torch build the running interpreter has (pip finds it
where this machine's pip configuration says: an index, a find-links folder). Needs the package registry and
about 1 GB of disk; marked slow.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def no_index_env() -> dict[str, str]:
    """pip with no configuration at all (no index, no find-links, no constraints), and no source checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k != "PYTHONPATH"}
    return env | {"PIP_CONFIG_FILE": os.devnull}


@pytest.mark.slow
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="manylinux wheels: a glibc Linux")
def test_mmtune_installs_from_the_wheelhouse_with_no_index(tmp_path):
    wheelhouse, venv = tmp_path / "wheelhouse", tmp_path / "venv"
    glibc_minor = platform.libc_ver()[1].split(".")[1]
    make = subprocess.run(
        ["make", "-C", str(ROOT), "wheelhouse", f"PYTHON={sys.executable}", f"WHEELHOUSE={wheelhouse}",
         f"WHEEL_PYTHON={sys.version_info.major}.{sys.version_info.minor}", f"WHEEL_ARCH={platform.machine()}",
         f"WHEEL_GLIBC={glibc_minor}", f"TORCH=torch=={version('torch')}"],
        capture_output=True, text=True, timeout=1800)
    assert make.returncode == 0, make.stdout[-3000:] + make.stderr[-3000:]
    assert {path.name.split("-")[0] for path in wheelhouse.glob("*.whl")} >= {"mmtune", "torch", "transformers"}

    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=no_index_env(), timeout=300)
    install = subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-index",
                              "--find-links", wheelhouse, "mmtune[demo,vi]"],
                             capture_output=True, text=True, env=no_index_env(), timeout=1800)
    assert install.returncode == 0, install.stderr[-3000:]

    helped = subprocess.run([venv / "bin" / "python", "-m", "mmtune", "--help"], capture_output=True, text=True,
                            env=no_index_env(), cwd=tmp_path, timeout=300)
    assert helped.returncode == 0 and "usage: mmtune" in helped.stdout, helped.stderr
    where = subprocess.run([venv / "bin" / "python", "-c", "import mmtune, torch; print(mmtune.__file__)"],
                           capture_output=True, text=True, env=no_index_env(), cwd=tmp_path, timeout=300)
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr
