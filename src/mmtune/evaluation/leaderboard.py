"""The leaderboard of runs: every run folder, cv folder and ensemble under some folders, read and scored alike.

A run is scored on its val_predictions.csv, a cv folder on its oof.csv, an ensemble (the `ens.json` that
`mmtune ensemble --out ens.csv` wrote beside `ens.csv`) on its OOF predictions (`ens.oof.csv`, or `ens.csv`
when it had no test files). Macro-F1 is computed here from the predictions, the same way for every kind; its
spread is over the `fold` column when the file has one. Folders come from teammates and Kaggle datasets: every
file is read with the strict readers, and a folder that cannot be read is skipped with the reason, never a crash.
Paths written inside an ensemble's JSON are never followed: its files are found next to it, by name.
The table made of the entries (columns, sorting, CSV, JSON): evaluation/leaderboard_table.py.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mmtune.config import Config, config_yaml, flat_dict, load_config
from mmtune.errors import InputError
from mmtune.evaluation.folders import (
    OOF_FILE,
    RUN_CONFIG,
    SUMMARY_FILE,
    TEST_FILE,
    TEST_PREDICTIONS,
    VAL_PREDICTIONS,
    fold_dir,
    folder_kind,
    read_cv_summary,
    read_history,
    read_json_file,
)
from mmtune.evaluation.metrics import evaluate_probs
from mmtune.evaluation.predictions import Predictions, read_predictions

# Keys that differ between any two runs without saying anything about them: where they wrote, what they are
# called, which fold a cv's run validated on.
UNTELLING_KEYS = frozenset({"name", "output_dir", "train.val_fold", "cv.only", "cv.folds_file"})
MAX_DEPTH = 8  # folders below a given folder that are searched (a run's best/ and last/ are never entered)
ENSEMBLE_KIND = "ensemble"


@dataclass
class Found:
    """A folder (or an ensemble's JSON file) to read, and what it looked like."""

    path: Path
    kind: str  # run | cv | export | ensemble
    name: str


@dataclass
class Skipped:
    path: Path
    reason: str


@dataclass
class Entry:
    """One row of the leaderboard, with what the report draws from it."""

    name: str
    kind: str
    path: Path
    model: str
    cfg: Config | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # the resolved config, flat (`train.lr`: 0.001)
    config_text: str = ""  # the resolved config (or the ensemble's recipe) as YAML, for the report
    predictions: Predictions | None = None  # validation / OOF, with gold
    test: Predictions | None = None
    histories: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    wall_s: float | None = None
    date: str | None = None
    macro_f1: float | None = None
    fold_f1: dict[int, float] = field(default_factory=dict)
    per_class_f1: dict[str, float] = field(default_factory=dict)
    test_macro_f1: float | None = None

    @property
    def macro_f1_std(self) -> float | None:
        return float(np.std(list(self.fold_f1.values()))) if len(self.fold_f1) > 1 else None


# ----------------------------------------------------------------------------------------------
# Finding


def discover(roots: Sequence[Path]) -> tuple[list[Found], list[Skipped]]:
    """Every run, cv folder, export folder and ensemble under `roots` (each root may itself be one); a run or cv
    folder is not searched further, but ensembles written into it are listed. Linked folders are followed, each
    folder once (a loop of links ends)."""
    found: dict[Path, Found] = {}
    skipped: list[Skipped] = []
    for root in roots:
        root = Path(root)
        label = root.resolve().name or str(root)
        if root.is_file() and is_ensemble_file(root):
            _add(found, Found(root, ENSEMBLE_KIND, root.stem))
        elif not root.is_dir():
            skipped.append(Skipped(root, "not a folder" if root.exists() else "not found"))
        else:
            _walk(root, label, found, skipped)
    return list(found.values()), skipped


def _add(found: dict[Path, Found], item: Found) -> None:
    found.setdefault(item.path.resolve(), item)  # one folder given twice (or by two roots) is one row


def _walk(root: Path, label: str, found: dict[Path, Found], skipped: list[Skipped]) -> None:
    stack, seen = [(root, 0)], set()
    while stack:
        folder, depth = stack.pop()
        real = folder.resolve()
        if real in seen:
            continue  # a folder linked twice, or a loop of links
        seen.add(real)
        name = label if folder == root else f"{label}/{folder.relative_to(root).as_posix()}"
        try:
            kind = folder_kind(folder)
            children = sorted(folder.iterdir())
        except OSError as exc:
            skipped.append(Skipped(folder, f"cannot be read ({exc.strerror})"))
            continue
        if kind is not None:
            _add(found, Found(folder, kind, name))
        for child in children:
            if child.suffix == ".json" and is_ensemble_file(child):
                _add(found, Found(child, ENSEMBLE_KIND, f"{name}/{child.stem}"))
        if kind is None and depth < MAX_DEPTH:
            stack.extend((c, depth + 1) for c in reversed(children) if c.is_dir())


def ensemble_files(summary: Path) -> tuple[Path, Path | None]:
    """(OOF predictions, test predictions) of the ensemble whose summary is `summary` (ens.json): `ens.oof.csv`
    and `ens.csv` when it blended test files, else `ens.csv` alone holds the OOF rows."""
    out = summary.with_suffix(".csv")
    oof = summary.with_name(summary.stem + ".oof.csv")
    return (oof, out) if oof.is_file() else (out, None)


def is_ensemble_file(path: Path) -> bool:
    """A `.json` file that `mmtune ensemble` wrote: its predictions `.csv` is beside it (cheap, and nothing else
    is opened) and it is an object with the saved `blend` and the `method`."""
    if path.suffix != ".json" or not path.with_suffix(".csv").is_file() or path.name == SUMMARY_FILE:
        return False
    try:
        summary = read_json_file(path)
    except InputError:
        return True  # a damaged ensemble summary: reading it says what is wrong, and the folder is skipped
    return isinstance(summary, dict) and isinstance(summary.get("blend"), dict) and "method" in summary


# ----------------------------------------------------------------------------------------------
# Reading


def read_entry(found: Found, gold: Mapping[str, str] | None = None) -> Entry:
    """The row of one run, cv folder or ensemble, scored; InputError names what is wrong."""
    readers = {"run": _read_run, "cv": _read_cv, ENSEMBLE_KIND: _read_ensemble}
    if found.kind not in readers:
        raise InputError(f"{found.path}: a {found.kind} folder has no predictions to score")
    entry = readers[found.kind](found)
    score(entry, gold)
    return entry


def _read_run(found: Found) -> Entry:
    folder = found.path
    cfg = load_config(folder / RUN_CONFIG)
    val = folder / VAL_PREDICTIONS
    preds = read_predictions(val, need_gold=True) if val.is_file() else None
    history = read_history(folder)
    return Entry(found.name, "run", folder, describe_model(cfg), cfg, _settings(cfg), config_yaml(cfg), preds,
                 _optional_predictions(folder / TEST_PREDICTIONS), {"run": history}, _elapsed([history]),
                 _date(val, folder / RUN_CONFIG))


def _read_cv(found: Found) -> Entry:
    folder = found.path
    oof_path = folder / OOF_FILE
    preds = read_predictions(oof_path, need_gold=True) if oof_path.is_file() else None
    if (folder / SUMMARY_FILE).is_file():
        folds = [int(k) for k in read_cv_summary(folder / SUMMARY_FILE)["folds"]]
    else:
        folds = sorted(set(preds.folds or [])) if preds is not None else []
    runs = [fold_dir(folder, k) for k in folds if (fold_dir(folder, k) / RUN_CONFIG).is_file()]
    histories = {f"fold {run.name.removeprefix('fold-')}": read_history(run) for run in runs}
    entry = Entry(found.name, "cv", folder, "?", predictions=preds, test=_optional_predictions(folder / TEST_FILE),
                  histories=histories, wall_s=_elapsed(list(histories.values())),
                  date=_date(oof_path, folder / SUMMARY_FILE))
    if runs:  # a cv folder shared as its predictions alone (no fold-K/) is still scored, without a config
        entry.cfg = load_config(runs[0] / RUN_CONFIG)
        entry.model, entry.settings, entry.config_text = (describe_model(entry.cfg), _settings(entry.cfg),
                                                          config_yaml(entry.cfg))
    return entry


def _read_ensemble(found: Found) -> Entry:
    summary = read_json_file(found.path)
    if not isinstance(summary, dict) or not isinstance(summary.get("method"), str):
        raise InputError(f"{found.path}: not an ensemble summary written by mmtune ensemble (no 'method')")
    inputs = summary.get("inputs")
    inputs = [str(item) for item in inputs] if isinstance(inputs, list) else []
    oof, test = ensemble_files(found.path)
    recipe = {"method": summary["method"], "inputs": inputs, "calibration": summary.get("calibration") is not None}
    settings = {"ensemble.method": summary["method"], "ensemble.inputs": len(inputs)}
    text = json.dumps(recipe, indent=1, ensure_ascii=False)
    # Ensembles written before their figures were nested (cross-fitted) flagged a blend scored on the rows it was
    # fitted on: such a figure flatters itself, and the row says so.
    in_sample = " (OOF in-sample)" if summary.get("ensemble_oof_is_in_sample") is True else ""
    return Entry(found.name, ENSEMBLE_KIND, found.path, f"{summary['method']} ensemble of {len(inputs)} inputs"
                 + in_sample,
                 None, settings, text, read_predictions(oof, need_gold=True),
                 read_predictions(test) if test is not None else None, {}, None, _date(oof, found.path))


def _optional_predictions(path: Path) -> Predictions | None:
    return read_predictions(path) if path.is_file() else None


def _settings(cfg: Config) -> dict[str, Any]:
    return {key: value for key, value in flat_dict(cfg).items() if key not in UNTELLING_KEYS}


def describe_model(cfg: Config) -> str:
    """The model in a few words: the kind and its checkpoints (folders by their last name)."""
    model = cfg.model
    if model.kind == "fusion":
        text, image = model.fusion.text_encoder or model.name, model.fusion.image_encoder or model.name
        return f"fusion {model.fusion.method}: {_checkpoint(text)} + {_checkpoint(image)}"
    return f"{model.kind}: {_checkpoint(model.name)}"


def _checkpoint(name: str | None) -> str:
    if not name:
        return "?"
    return Path(name).name if Path(name).is_absolute() or name.startswith(".") else name


def _elapsed(histories: Iterable[list[dict[str, Any]]]) -> float | None:
    """Wall time from the runs' `elapsed_s` (seconds on their process's clock at each evaluation). A cv's folds
    trained in one process count on one clock, so a fold that starts after the previous fold's end adds only
    its own span; a fold of a new process (cv.only, a resumed cv) adds all of its time."""
    total, previous_end, seen = 0.0, 0.0, False
    for history in histories:
        times = [r["elapsed_s"] for r in history if is_number(r.get("elapsed_s"))]
        if not times:
            continue
        seen = True
        start, end = times[0], times[-1]
        total += end - previous_end if start >= previous_end else end
        previous_end = end
    return round(total, 1) if seen else None


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _date(*paths: Path) -> str | None:
    """When the first file of `paths` that exists was last written, in UTC."""
    for path in paths:
        try:
            stamp = path.stat().st_mtime
        except OSError:
            continue
        return datetime.fromtimestamp(stamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")
    return None


# ----------------------------------------------------------------------------------------------
# Scoring


def score(entry: Entry, gold: Mapping[str, str] | None = None) -> None:
    """Macro-F1 and per-class F1 on the validation/OOF predictions, per fold when they have folds; test
    macro-F1 when every test post has a gold label (the file's gold column, or `gold`: id -> label)."""
    preds = entry.predictions
    if preds is not None:
        targets = preds.targets()
        metrics = evaluate_probs(preds.probs, targets, preds.labels)
        entry.macro_f1 = metrics["macro_f1"]
        entry.per_class_f1 = {label: row["f1"] for label, row in metrics["per_class"].items()}
        if preds.folds is not None:
            folds = np.asarray(preds.folds)
            entry.fold_f1 = {int(k): evaluate_probs(preds.probs[folds == k], targets[folds == k],
                                                    preds.labels)["macro_f1"] for k in np.unique(folds)}
    if entry.test is not None:
        entry.test_macro_f1 = test_macro_f1(entry.test, gold)


def test_macro_f1(test: Predictions, gold: Mapping[str, str] | None) -> float | None:
    known = test.gold if test.gold is not None and None not in test.gold else None
    if known is None and gold is not None:
        known = [gold.get(pid) for pid in test.ids]
    if known is None or not set(known) <= set(test.labels):
        return None  # a post without gold, or with a label the model does not know: no score rather than a wrong one
    index = {label: k for k, label in enumerate(test.labels)}
    return evaluate_probs(test.probs, np.array([index[g] for g in known]), test.labels)["macro_f1"]
