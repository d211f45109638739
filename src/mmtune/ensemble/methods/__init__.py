"""The ensemble methods: one module per method, named as `--method` names it; adding a method is one new module.

Each module defines `METHOD`, a `Method`: how to build its blender and what it asks of the inputs. A blender
keeps scikit-learn's estimator contract: `fit(X, y)` learns from out-of-fold predictions (fitted attributes
end in `_`), `predict_proba(X)` returns [N, K] probabilities that sum to 1, for OOF rows or test rows alike.
`X` is [N, M, K]: for each post, each member's class probabilities (rows aligned by `inputs.align`).
A method also says how a fitted blender is saved as plain JSON numbers (`save`) and rebuilt from them (`load`):
`mmtune predict ENSEMBLE.json` applies the blend to a new file without refitting, and never unpickles anything.

The names are the modules found here, listed without importing them (the CLI's help reads them and stays
light); a method's module is imported when it is used.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


class Blender(Protocol):
    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> Any: ...

    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...


def fit_rows(blender: Any, X: np.ndarray, y: np.ndarray | None, groups: np.ndarray | None) -> Any:
    """Fit on the OOF rows (most blenders have no use for their folds)."""
    return blender.fit(X, y)


def nothing_fitted(blender: Any) -> dict[str, Any]:
    """A blender with nothing to report."""
    return {}


class StateError(ValueError):
    """A saved blender state that cannot be what `save` wrote: `key` names the bad entry."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key, self.reason = key, reason


def saved_numbers(state: dict[str, Any], key: str, shape: tuple[int, ...]) -> np.ndarray:
    """state[key] as a float array of `shape`, every entry a finite JSON number (saved files may be edited)."""
    value = state.get(key)
    if not _nested_numbers(value, shape):
        wanted = f"a list of {shape[-1]} finite numbers"
        for size in reversed(shape[:-1]):
            wanted = f"a list of {size} lists, each {wanted}"
        raise StateError(key, f"must be {wanted}, as the ensemble saved it")
    return np.array(value, dtype=np.float64)


def _nested_numbers(value: Any, shape: tuple[int, ...]) -> bool:
    # Iterative over the expected shape: no recursion a deep hostile list could exhaust, no numpy coercion
    # of strings or booleans.
    level = [value]
    for size in shape:
        if not all(isinstance(item, list) and len(item) == size for item in level):
            return False
        level = [entry for item in level for entry in item]
    return all(isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x) for x in level)


@dataclass(frozen=True)
class Method:
    """What `--method NAME` does: how its blender is built and fitted, and what it asks of the inputs."""

    # seed -> an unfitted blender; None: it blends with the method its rules file names as `base:`.
    build: Callable[[int], Blender] | None
    needs_gold: bool = False  # fitted (or scored) on the OOF rows' gold labels
    # Learns from the OOF rows' gold labels: its score on those rows would be in-sample, so the ensemble scores
    # it by nested CV (fitted on the other folds, scored on the held-out one), and its inputs must share folds.
    fitted_on_gold: bool = False
    rules_base: bool = False  # may be the `base:` blend that a rules file overrides
    # (blender, X, y, the OOF rows' folds) -> the fitted blender
    fit: Callable[[Any, np.ndarray, np.ndarray | None, np.ndarray | None], Any] = fit_rows
    # fitted blender -> what the ensemble summary reports of it (e.g. the members' weights)
    fitted: Callable[[Any], dict[str, Any]] = nothing_fitted
    # fitted blender -> its fitted state as JSON lists of numbers (the ensemble's saved blend)
    save: Callable[[Any], dict[str, Any]] = nothing_fitted
    # (saved state, members M, labels K) -> the fitted blender again; StateError for a state `save` cannot write.
    # None: the method only blends through its rules file's `base:` method.
    load: Callable[[dict[str, Any], int, int], Blender] | None = None

    @property
    def needs_rules(self) -> bool:
        return self.build is None


def known_methods() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def get_method(name: str) -> Method:
    if name not in known_methods():
        raise KeyError(name)
    return importlib.import_module(f"{__name__}.{name}").METHOD


def rules_bases() -> list[str]:
    """The methods a rules file may name as its `base:`."""
    return [name for name in known_methods() if get_method(name).rules_base]


def check_members(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 3:
        raise ValueError(f"members must have shape [N, M, K], got {X.shape}")
    return X


def normalized(probs: np.ndarray) -> np.ndarray:
    return probs / probs.sum(axis=1, keepdims=True)
