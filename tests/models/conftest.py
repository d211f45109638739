"""Fixtures shared by the model tests: tiny VLM checkpoints, built once per session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mmtune.models.tiny import make_tiny


@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The folder of a tiny `family` checkpoint (seed 0), written on first use."""
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            name = "vlm_" + family.replace("-", "_").replace(".", "_")
            built[family] = make_tiny(family, tmp_path_factory.mktemp(name))
        return built[family]

    return get
