"""Model ids and folders named by a config, checked before anything loads (no torch; at most one short
probe of the Hub, see mmtune.hub).

A value that looks like a local path is a folder and must be one: a Hugging Face model folder (with
config.json) of the architecture the kind needs. Without this, a mistyped folder name becomes a Hub
id, and the run waits on the network before it fails with a traceback.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from mmtune.errors import InputError
from mmtune.hub import check_hub_model

log = logging.getLogger("mmtune")

CONFIG_JSON = "config.json"
MAX_CONFIG_JSON_BYTES = 4 << 20
_LOCAL_PREFIXES = ("/", "./", "../", "~", ".\\", "..\\")


def looks_local(value: str) -> bool:
    """A path rather than a Hub id: an explicit path, an existing path, or one whose first folder exists."""
    if value.startswith(_LOCAL_PREFIXES) or value in (".", ".."):
        return True
    path = Path(value)
    if path.exists():
        return True
    return os.sep in value and Path(path.parts[0]).is_dir()


def check_model_source(value: str | None, key: str, model_types: set[str] | None = None,
                       kind: str | None = None) -> None:
    """A local model folder exists, has a readable config.json and (given `model_types`) the right
    architecture; a Hub id is cached or the Hub answers (mmtune.hub); `pypi:` encoders are left to their loaders."""
    if not value or value.startswith("pypi:"):
        return
    if looks_local(value):
        folder = Path(value).expanduser()
        if not folder.exists():
            raise InputError(f"{key}: model folder '{value}' not found")
        if not folder.is_dir():
            raise InputError(f"{key}: '{value}' is a file, not a model folder (a folder with config.json)")
    else:
        cached = check_hub_model(value, key)
        if cached is None:  # not cached, and the Hub answers: the loader downloads it
            return
        folder = cached.parent
    model_type = read_model_type(folder, key)
    if model_types and model_type not in model_types:
        wanted = " or ".join(sorted(model_types))
        raise InputError(f"{key}: '{value}' is a {model_type} model; model.kind={kind} needs a {wanted} checkpoint")


def read_model_type(folder: Path, key: str) -> str:
    config = folder / CONFIG_JSON
    if not config.is_file():
        raise InputError(f"{key}: '{folder}' has no {CONFIG_JSON}: not a Hugging Face model folder")
    if config.stat().st_size > MAX_CONFIG_JSON_BYTES:
        raise InputError(f"{key}: {config} is too large for a model config")
    try:
        data: Any = json.loads(config.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:  # ValueError: not UTF-8, not JSON, an integer of 5,000 digits
        raise InputError(f"{key}: {config} is not valid JSON ({str(exc).splitlines()[0]})") from None
    except OSError as exc:
        raise InputError(f"{key}: cannot read {config} ({exc.strerror})") from None
    if not isinstance(data, dict):
        raise InputError(f"{key}: {config} is not a model config (a JSON object)")
    return str(data.get("model_type", "unknown"))


def check_config_models(cfg: Any) -> None:
    """Every model folder a config names, for its kind (and for build-vlm's parts)."""
    model = cfg.model
    if model.kind == "vilt":
        check_model_source(model.name, "model.name", {"vilt"}, kind="vilt")
    else:
        check_model_source(model.name, "model.name")
    check_model_source(model.fusion.text_encoder, "model.fusion.text_encoder")
    check_model_source(model.fusion.image_encoder, "model.fusion.image_encoder")
    check_model_source(cfg.build.vision, "build.vision")
    check_model_source(cfg.build.llm, "build.llm")


_said: set[str] = set()


def note_fixed_image_size(encoder: str, side: int, requested: int, default: int) -> None:
    """Once per encoder: data.image.size was set but this encoder takes images of its own size."""
    if requested != default and requested != side and encoder not in _said:
        _said.add(encoder)
        log.info(f"data.image.size={requested} is not used: {encoder} takes {side}x{side} images")
