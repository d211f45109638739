"""`mmtune inspect`: audit a data file (labels, duplicates, faults, images, leakage against a test file)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmtune.config import DataConfig
from mmtune.data.audit import InspectRequest, inspect_data
from mmtune.outputs import check_outputs, write_text_atomic


@dataclass
class AuditFiles:
    data: Path
    images: Path | None = None
    test: Path | None = None  # a test file to compare with (shift, leakage)
    test_images: Path | None = None


def check_inspect(files: AuditFiles, json_out: Path | None, config_file: Path | None = None) -> None:
    """--json is no input (the data, the test file, the config)."""
    check_outputs({"--json": json_out}, {"data": files.data, "--test": files.test, "--config": config_file})


def inspect(files: AuditFiles, data_cfg: DataConfig, json_out: Path | None = None,
            progress: Callable[[], None] | None = None) -> dict[str, Any]:
    """The audit of the data file (and of the test file); with `json_out`, also written there (checked first with
    `check_inspect`). `progress` is called once per post."""
    started = time.perf_counter()
    request = InspectRequest(files.data, files.images, files.test, files.test_images)
    report = inspect_data(request, data_cfg, progress=progress)
    report["seconds"] = round(time.perf_counter() - started, 2)
    if json_out is not None:
        write_text_atomic(json_out, json.dumps(report, ensure_ascii=False, indent=1))
    return report
