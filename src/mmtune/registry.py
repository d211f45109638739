"""Registries that are a package's modules: one module per entry, named as the entry, listed without importing.

`entry_names(__path__)` lists a registry package's entries (modules whose name starts with '_' are shared
helpers); `entry_module(__name__, name, key, what)` imports the one entry asked for, or names the config key
and the known entries in an InputError.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from types import ModuleType

from mmtune.errors import InputError


def entry_names(package_path: Iterable[str]) -> list[str]:
    return sorted(module.name for module in pkgutil.iter_modules(package_path) if not module.name.startswith("_"))


def check_entry(package_path: Iterable[str], name: str, key: str, what: str) -> None:
    """An InputError naming `key` and the known entries when `name` is none of them; imports nothing."""
    known = entry_names(package_path)
    if name not in known:
        raise InputError(f"{key}: unknown {what} {name!r} (known: {', '.join(known)})")


def entry_module(package: str, package_path: Iterable[str], name: str, key: str, what: str) -> ModuleType:
    check_entry(package_path, name, key, what)
    return importlib.import_module(f"{package}.{name}")
