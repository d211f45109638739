"""An ensemble's saved blend: what `mmtune ensemble` fitted, kept in its summary JSON under `blend`, and rebuilt
from there by `mmtune predict ENSEMBLE.json` to blend a new file's predictions the same way.

    "blend": {"version": 1, "method": "stack", "labels": [...],
              "inputs": [{"kind": "cv", "path": "cv-a"}, ...],   # run | cv folder (re-run), or file (cannot be)
              "label_map": {...}, "priors": [...] | null,          # how members of other label sets were mapped
              "state": {...},                                      # the method's fitted numbers (its `save`)
              "calibration": {"temperature": t, "biases": [...]} | null,
              "rules": {"base": ..., "rules": [...]} | null,
              "train_labels": {"label": count} | null}             # the OOF gold labels, for `submit`'s check

Only JSON numbers and strings: nothing is unpickled. Input paths are relative to the JSON file's folder, so a
folder holding the runs and the JSON can move (to a Kaggle dataset). The file may be edited or come from
someone else, so it is read strictly: every entry's type and shape is checked and a bad one is named by key.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmtune.data.textfile import JsonError, describe, first_lone_surrogate, first_repeated_key, loads, read_text
from mmtune.ensemble.blend import FittedBlend, blend_method
from mmtune.ensemble.inputs import LabelMap
from mmtune.ensemble.methods import StateError, get_method, known_methods
from mmtune.ensemble.rules import parse_rules
from mmtune.errors import InputError
from mmtune.evaluation.calibration import MacroF1Calibrator
from mmtune.evaluation.folders import folder_kind

KEY, VERSION = "blend", 1
KINDS = ("run", "cv", "file")


@dataclass(frozen=True)
class Source:
    """An ensemble input: a run or cv folder (whose models predict a new file) or a prediction file."""

    kind: str  # run | cv | file
    path: Path


@dataclass
class SavedBlend:
    path: Path  # the JSON file it was read from
    sources: list[Source]
    label_map: LabelMap
    priors: np.ndarray | None
    fitted: FittedBlend
    train_labels: dict[str, int] | None

    @property
    def labels(self) -> list[str]:
        return self.fitted.labels


def blend_record(fitted: FittedBlend, sources: Sequence[Source], label_map: LabelMap, priors: np.ndarray | None,
                 gold: Sequence[str | None] | None, json_path: Path) -> dict[str, Any]:
    """The `blend` entry of the ensemble's summary JSON written at `json_path`."""
    calibrator, rules = fitted.calibrator, fitted.rules
    counts = Counter(g for g in gold or [] if g is not None)
    return {
        "version": VERSION, "method": fitted.method, "labels": list(fitted.labels),
        "inputs": [{"kind": s.kind, "path": _relative(s.path, json_path.parent)} for s in sources],
        "label_map": {source: list(targets) for source, targets in label_map.items()},
        "priors": [float(p) for p in priors] if priors is not None else None,
        "state": blend_method(get_method(fitted.method), rules).save(fitted.blender),
        "calibration": None if calibrator is None else {"temperature": float(calibrator.temperature_),
                                                        "biases": [float(b) for b in calibrator.biases_]},
        "rules": None if rules is None else {"base": rules.base, "rules": [
            {"label": r.label, "when": r.when, "min_prob": r.min_prob} for r in rules.rules]},
        "train_labels": {label: counts[label] for label in fitted.labels} if gold is not None else None,
    }


def _relative(path: Path, folder: Path) -> str:
    return os.path.relpath(path.resolve(), folder.resolve())


def read_saved_blend(path: Path) -> SavedBlend:
    """The saved blend of an ensemble summary JSON, rebuilt; exit 2 naming the file and key for anything else."""
    try:
        raw = loads(read_text(path, "ensemble file"))
    except JsonError as exc:
        raise InputError(f"{path}: {exc.at()}") from None
    if (repeated := first_repeated_key(raw)) is not None:
        raise InputError(f"{path}: key '{repeated}' appears twice")
    if (text := first_lone_surrogate(raw)) is not None:
        raise InputError(f"{path}: text {text} is not valid Unicode")
    if not isinstance(raw, dict) or KEY not in raw:
        raise InputError(f"{path}: not an ensemble saved by mmtune ensemble (no '{KEY}' key); "
                         "run mmtune ensemble again to save its blend")
    return _Reader(path).blend(raw[KEY])


def _full(key: str) -> str:
    """A key inside `blend` as messages name it: `blend.state.weights`."""
    return f"{KEY}.{key}" if key else KEY


class _Reader:
    """Checks each entry of one file's `blend`, naming `file: key 'blend.x.y'` in every error."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, wanted: str, value: Any) -> InputError:
        return InputError(f"{self.path}: key '{_full(key)}' must be {wanted}, got {describe(value)}")

    def entry(self, obj: dict[str, Any], key: str, where: str) -> Any:
        if key not in obj:
            raise InputError(f"{self.path}: key '{_full(f'{where}.{key}' if where else key)}' is missing")
        return obj[key]

    def mapping(self, value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, "an object", value)
        return value

    def blend(self, value: Any) -> SavedBlend:
        blend = self.mapping(value, "")
        unknown = sorted(set(blend) - {"version", "method", "labels", "inputs", "label_map", "priors", "state",
                                       "calibration", "rules", "train_labels"})
        if unknown:
            raise InputError(f"{self.path}: key '{KEY}.{unknown[0]}' is not a key of a saved blend")
        version = self.entry(blend, "version", "")
        if isinstance(version, bool) or not isinstance(version, int) or version != VERSION:
            raise self.fail("version", f"{VERSION} (this mmtune reads version {VERSION})", version)
        method = self.entry(blend, "method", "")
        if method not in known_methods():
            raise self.fail("method", f"one of {known_methods()}", method)
        labels = self.labels(self.entry(blend, "labels", ""))
        sources = self.sources(self.entry(blend, "inputs", ""))
        rules = self.rules(self.entry(blend, "rules", ""), method, labels)
        base = blend_method(get_method(method), rules)
        try:
            blender = base.load(self.mapping(self.entry(blend, "state", ""), "state"), len(sources), len(labels))
        except StateError as exc:
            raise InputError(f"{self.path}: key '{KEY}.state.{exc.key}' {exc.reason}") from None
        calibrator = self.calibration(self.entry(blend, "calibration", ""), len(labels))
        return SavedBlend(self.path, sources, self.label_map(self.entry(blend, "label_map", ""), labels),
                          self.priors(self.entry(blend, "priors", ""), len(labels)),
                          FittedBlend(method, labels, blender, calibrator, rules),
                          self.train_labels(self.entry(blend, "train_labels", ""), labels))

    def labels(self, value: Any) -> list[str]:
        if (not isinstance(value, list) or len(value) < 2 or not all(isinstance(v, str) and v for v in value)
                or len(set(value)) != len(value)):
            raise self.fail("labels", "a list of 2 or more different label names", value)
        return value

    def sources(self, value: Any) -> list[Source]:
        if not isinstance(value, list) or not value:
            raise self.fail("inputs", "a non-empty list of {kind, path} objects", value)
        sources = []
        for i, item in enumerate(value):
            item = self.mapping(item, f"inputs[{i}]")
            kind, path = self.entry(item, "kind", f"inputs[{i}]"), self.entry(item, "path", f"inputs[{i}]")
            if kind not in KINDS:
                raise self.fail(f"inputs[{i}].kind", f"one of {list(KINDS)}", kind)
            if not isinstance(path, str) or not path or "\0" in path:
                raise self.fail(f"inputs[{i}].path", "a path", path)
            sources.append(Source(kind, self.path.parent / Path(path).expanduser()))
        return sources

    def rules(self, value: Any, method: str, labels: list[str]) -> Any:
        needs_rules = get_method(method).needs_rules
        if value is None and not needs_rules:
            return None
        if value is None or not needs_rules:
            raise self.fail("rules", "a rules object for method 'rules' and null for any other", value)
        return parse_rules(value, labels, f"{self.path}: key '{KEY}.rules'", allow_empty=True)

    def calibration(self, value: Any, labels: int) -> MacroF1Calibrator | None:
        if value is None:
            return None
        value = self.mapping(value, "calibration")
        temperature = self.entry(value, "temperature", "calibration")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise self.fail("calibration.temperature", "a positive number", temperature)
        biases = self.numbers(self.entry(value, "biases", "calibration"), "calibration.biases", labels)
        return MacroF1Calibrator.restored(temperature, biases)

    def numbers(self, value: Any, key: str, size: int) -> np.ndarray:
        if not isinstance(value, list) or len(value) != size or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in value):
            raise self.fail(key, f"a list of {size} finite numbers", value)
        return np.array(value, dtype=np.float64)

    def priors(self, value: Any, size: int) -> np.ndarray | None:
        if value is None:
            return None
        priors = self.numbers(value, "priors", size)
        if (priors < 0).any():
            raise self.fail("priors", f"{size} label frequencies >= 0", value)
        return priors

    def label_map(self, value: Any, labels: list[str]) -> LabelMap:
        mapping = self.mapping(value, "label_map")
        for source, targets in mapping.items():
            if not isinstance(targets, list) or not targets or not all(t in labels for t in targets):
                raise self.fail(f"label_map.{source}", f"a non-empty list of labels among {labels}", targets)
        return mapping

    def train_labels(self, value: Any, labels: list[str]) -> dict[str, int] | None:
        if value is None:
            return None
        counts = self.mapping(value, "train_labels")
        for label, count in counts.items():
            if label not in labels or isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise self.fail(f"train_labels.{label}", f"a count (an integer >= 0) of one of {labels}", count)
        return counts


def model_sources(saved: SavedBlend) -> list[Source]:
    """The run and cv folders that predict a new file for the blend, each still the kind of folder it was; a
    blend of prediction files has no model to run, which is bad input naming the first such file."""
    for i, source in enumerate(saved.sources):
        where = f"{saved.path}: input {i + 1} ({source.path})"
        if source.kind == "file":
            raise InputError(f"{where} was a prediction file, not a run or cv folder: there is no model to predict "
                             "a new file with; ensemble the run or cv folders (or their oof.csv) to predict new files")
        found = folder_kind(source.path) if source.path.is_dir() else None
        if found != source.kind:
            now = f"is a {found} folder" if found else "is not there" if not source.path.exists() else "is no folder"
            raise InputError(f"{where} was a {source.kind} folder when the ensemble was fitted but {now} now; "
                             "the JSON's input paths are relative to its own folder")
    return list(saved.sources)
