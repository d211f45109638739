"""`mmtune config`: a config checked as a run checks it before any work (types, ranges, the kind and its
section, registry names), printed resolved as YAML; or the schema: every key, its default and what it accepts.

The checks that need the registries of models/ (kinds, fusions, freeze presets) live above config.py, so this
recipe runs them and names where the value came from, as config.py does for its own checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mmtune.config import Config, Origins, build, config_yaml, describe_schema, read_config
from mmtune.errors import InputError
from mmtune.models.freeze_presets import known_presets
from mmtune.models.fusions import known_fusions
from mmtune.models.kinds import check_kind, known_kinds


def checked_config(path: Path | None, overrides: Sequence[str]) -> Config:
    """The config of `path` plus `overrides`, refused (exit 2, one line naming the key and where it was set) on
    anything a run refuses before it loads data or weights."""
    raw, origins = read_config(path, list(overrides))
    cfg = build(Config, raw, origins)
    try:
        check_kind(cfg)  # the kind is known, no other kind's section is set, fusion method and freeze preset exist
    except InputError as exc:
        raise _with_origin(exc, origins) from None
    return cfg


def resolved_yaml(path: Path | None, overrides: Sequence[str]) -> str:
    """What `mmtune config` prints: the checked config, every key, as YAML that reads back equal."""
    return config_yaml(checked_config(path, overrides))


def schema() -> list[tuple[str, str, str]]:
    """(key, default, doc with every accepted value) for every key, the registries' names included."""
    return describe_schema(names={"model.kind": known_kinds(), "model.fusion.method": known_fusions(),
                                  "model.freeze.preset": known_presets()})


def _with_origin(exc: InputError, origins: Origins) -> InputError:
    """A registry's `key: problem` with where the key was set in front (`c.yaml:4: model.kind: unknown ...`)."""
    where = origins.at(str(exc).partition(":")[0])
    return exc if where == Origins.DEFAULTS else InputError(f"{where}: {exc}")
