"""Output files of the commands: checked against the command's inputs before any work, written atomically.

A command never writes over one of its inputs, never writes two of its outputs to one path, and never
leaves a half-written file or a stray temporary file behind (the temporary file lives in the output's
folder, so the final `os.replace` is atomic, and it is removed when writing fails).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from mmtune.errors import InputError

Named = Mapping[str, "Path | None"]  # what the user calls the path (--out, data.train, ...) -> the path


def same_file(a: Path, b: Path) -> bool:
    """One file under two names: the same resolved path (symlinks, `..`) or, when both exist, one inode
    (hard links)."""
    try:
        a, b = a.expanduser().resolve(), b.expanduser().resolve()
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
        raise InputError(f"{a}: not a usable path ({exc})") from None
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def check_outputs(outputs: Named, inputs: Named | None = None) -> None:
    """Exit 2 naming the clash: an output that is a folder, that is one of the inputs, or that another
    output of the same command also writes."""
    named_outputs = [(name, Path(path)) for name, path in outputs.items() if path is not None]
    named_inputs = [(name, Path(path)) for name, path in (inputs or {}).items() if path is not None]
    for i, (name, path) in enumerate(named_outputs):
        _check_writable_kind(path, name)
        for input_name, input_path in named_inputs:
            if same_file(path, input_path):
                raise InputError(f"{name} {path}: is also the input {input_name} ({input_path}); "
                                 "writing it would destroy the input, give another file name")
        for other_name, other in named_outputs[:i]:
            if same_file(path, other):
                raise InputError(f"{name} {path}: is also where {other_name} is written ({other}); "
                                 "give another file name")


# What a run (train, cv, sft, dpo, build-vlm) writes into output_dir, by name.
RUN_FILES = ("config.yaml", "metrics.jsonl", "folds.csv", "val_predictions.csv", "test_predictions.csv",
             "learning_curve.png", "learning_rate.json", "oof.csv", "test.csv", "cv_summary.json", "report.html")


def config_inputs(cfg: Any) -> dict[str, Path | None]:
    """The files a config names as inputs."""
    data = cfg.data
    named = {"data.train": data.train, "data.val": data.val, "data.test": data.test,
             "cv.folds_file": cfg.cv.folds_file, "data.text.teencode_file": data.text.teencode_file}
    return {key: Path(value).expanduser() if value else None for key, value in named.items()}


def check_run_files(cfg: Any) -> None:
    """Before a run (train, cv, sft, dpo, build-vlm) starts any work: its input files are there and its
    outputs are sane."""
    for name, path in config_inputs(cfg).items():
        if path is not None and not path.is_file():
            what = ("is a folder, not a file" if path.is_dir() else
                    "is not a regular file (a FIFO, device or socket)" if path.exists() else "file not found")
            raise InputError(f"{name}: {what}: {path}")
    check_run_outputs(cfg)


def check_run_dir(run_dir: Path) -> None:
    """output_dir is a folder, or not there yet."""
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"output_dir: {run_dir} is a file, not a folder; set output_dir to a folder")


def check_run_outputs(cfg: Any) -> None:
    """output_dir is a folder (or not there yet), and none of the files a run writes into it is an input."""
    run_dir = Path(cfg.output_dir).expanduser()
    check_run_dir(run_dir)
    inputs = config_inputs(cfg)
    for name, path in inputs.items():
        if path is not None and same_file(path, run_dir):
            raise InputError(f"output_dir {run_dir}: is also the input {name}; give another folder")
    check_outputs({f"output_dir/{name}": run_dir / name for name in RUN_FILES}, inputs)


def _check_writable_kind(path: Path, name: str = "") -> None:
    """An output is a file or not there yet: never a folder, and never a FIFO or device that the final
    rename would replace."""
    where = f"{name} {path}" if name else str(path)
    if path.is_dir():
        raise InputError(f"{where}: is a folder; give a file name")
    if path.exists() and not path.is_file():
        raise InputError(f"{where}: is not a regular file (a FIFO, device or socket); give a file name")


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file next to `path`; on success it replaces `path` at once, on failure it is removed."""
    path = Path(path)
    _check_writable_kind(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{path}: cannot create its folder ({exc.strerror})") from None
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        handle = open(tmp, mode.replace("w", "x"), **kwargs)  # noqa: SIM115 - closed below, before the replace
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc.strerror})") from None
    try:
        with handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
