"""The registry of model kinds (`model.kind`): one module of this package per kind, found with pkgutil.

A kind module registers a `Kind`: its name, the `model.<section>` of the config it reads (config.py defines
the sections; the kind says which one is its own), its builder and its pre-flight checks. `check_kind` is what
a run checks before any data or weights load: the kind is known, no section of another kind is set, and the
kind's own checks pass. `build_classifier` only looks the kind up: a run folder's config.yaml holds every
section, and the defaults of other kinds' sections may have changed since it was written. Adding a kind is one
new module here plus its test; its classifier lives in a module of mmtune.models, named by `builder(module,
name)`: a kind module imports no torch, so that `mmtune config` and the pre-flight checks of every command
run in a fraction of a second (tests/test_cli.py::test_config_checks_load_no_torch).

This package imports no kind module by name (pkgutil finds them, as objectives/__init__.py does): the kind
modules import it, never the other way, so there is no module cycle and no list of kinds to keep in step.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mmtune.config import Config, ModelConfig
from mmtune.errors import InputError
from mmtune.models.freeze_presets import check_preset

if TYPE_CHECKING:
    from torch import nn

Builder = Callable[[Config, list[str], int], "nn.Module"]  # (config, labels in model order, outputs per post)


def builder(module: str, name: str) -> Builder:
    """The classifier `name` of `module`, imported when a model is built: registering and checking a kind
    (`mmtune config`, pre-flight) loads no torch or transformers."""
    def build(cfg: Config, labels: list[str], output_size: int) -> nn.Module:
        return getattr(importlib.import_module(module), name)(cfg, labels, output_size)

    return build


def _no_checks(cfg: Config) -> None:
    """Most kinds need no check beyond the types and ranges config.py checks."""


@dataclass(frozen=True)
class Kind:
    name: str
    section: str | None  # the `model.<section>` this kind reads; None: only the keys every kind shares
    build: Builder
    check: Callable[[Config], None] = field(default=_no_checks)  # InputError naming the key


_KINDS: dict[str, Kind] = {}


def register_kind(kind: Kind) -> Kind:
    if kind.name in _KINDS:
        raise ValueError(f"model kind '{kind.name}' is registered twice")
    if kind.section is not None and not dataclasses.is_dataclass(getattr(ModelConfig(), kind.section, None)):
        raise ValueError(f"model kind '{kind.name}': model.{kind.section} is not a section of config.ModelConfig")
    _KINDS[kind.name] = kind
    return kind


def _registry() -> dict[str, Kind]:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")  # runs its register_kind (once: modules are cached)
    return _KINDS


def known_kinds() -> list[str]:
    return sorted(_registry())


def get_kind(name: str) -> Kind:
    kinds = _registry()
    if name not in kinds:
        raise InputError(f"model.kind: unknown kind '{name}' (known: {', '.join(sorted(kinds))})")
    return kinds[name]


def check_kind(cfg: Config) -> Kind:
    """The kind of `model.kind`, once the config suits it: what a run checks before any data or weights load."""
    kind = get_kind(cfg.model.kind)
    check_preset(cfg.model.freeze.preset)  # an unknown preset: exit 2 naming model.freeze.preset
    owners: dict[str, list[str]] = {}
    for other in _registry().values():
        if other.section is not None:
            owners.setdefault(other.section, []).append(other.name)
    for section, names in sorted(owners.items()):
        if section != kind.section:
            _refuse_section(cfg.model, section, names, kind.name)
    kind.check(cfg)
    return kind


def _refuse_section(model: ModelConfig, section: str, owners: list[str], kind: str) -> None:
    """A section of other kinds must keep its defaults: a key set there would be silently ignored."""
    given = getattr(model, section)
    default = type(given)()
    for f in dataclasses.fields(given):
        if getattr(given, f.name) != getattr(default, f.name):
            whose = f"kind {owners[0]}" if len(owners) == 1 else f"kinds {', '.join(sorted(owners))}"
            raise InputError(f"model.{section}.{f.name}: belongs to {whose}, but model.kind is {kind}")


def build_classifier(cfg: Config, labels: list[str], output_size: int) -> nn.Module:
    """The classifier of kind `cfg.model.kind` for `labels` (in model order), `output_size` outputs per post."""
    return get_kind(cfg.model.kind).build(cfg, labels, output_size)
