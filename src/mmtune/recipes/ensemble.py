"""`mmtune ensemble`: many prediction files -> one, fitted on OOF files, applied to their test files.

Inputs are OOF files (`oof.csv`: with gold and fold), cv folders (their oof.csv and test.csv) or run folders
(their val_predictions.csv and test_predictions.csv). Outputs, for `--out ens.csv`: `ens.csv` (the ensemble of
the test files, or of the inputs when there are none), `ens.oof.csv` (the ensemble's OOF predictions, when
`ens.csv` holds test rows) and `ens.json` (how every member and the ensemble score on OOF, and under `blend`
what was fitted: `mmtune predict ens.json FILE` re-runs the input folders' models on FILE and blends them the
same way; ensemble/saved.py).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmtune.config import read_yaml_file
from mmtune.ensemble.inputs import LabelMap, Members, align, check_same_folds, gold_priors
from mmtune.ensemble.methods import Method, get_method, known_methods
from mmtune.errors import InputError
from mmtune.evaluation.folders import (
    OOF_FILE,
    TEST_FILE,
    TEST_PREDICTIONS,
    VAL_PREDICTIONS,
    folder_kind,
    model_source,
)
from mmtune.evaluation.predictions import Predictions, read_predictions, write_predictions
from mmtune.outputs import check_outputs, write_text_atomic

if TYPE_CHECKING:
    from mmtune.ensemble.blend import Blend

log = logging.getLogger(__name__)


@dataclass
class EnsembleRequest:
    inputs: list[Path]
    out: Path
    method: str = "mean"
    tests: list[Path] | None = None
    label_map: Path | None = None
    rules: Path | None = None
    calibrate: str | None = None  # None | auto (biases only when nested CV says they help) | always
    seed: int = 0
    force_rules: bool = False  # apply the rules that lower OOF macro-F1 too


@dataclass
class EnsembleResult:
    out: Path
    oof_out: Path | None
    summary: dict[str, Any] = field(default_factory=dict)


def folder_files(folder: Path) -> tuple[Path, Path]:
    """The (OOF, test) prediction files a folder input stands for: a run folder's validation and test
    predictions, a cv folder's oof.csv and test.csv."""
    if folder_kind(folder) == "run":
        return folder / VAL_PREDICTIONS, folder / TEST_PREDICTIONS
    return folder / OOF_FILE, folder / TEST_FILE


def resolve_inputs(inputs: list[Path], tests: list[Path] | None) -> tuple[list[Path], list[Path] | None]:
    """Run and cv folders stand for their OOF (and test) files; `--test` files pair with the inputs in order."""
    oofs = [folder_files(path)[0] if path.is_dir() else path for path in inputs]
    if tests is not None:
        if len(tests) != len(inputs):
            raise InputError(f"--test: {len(tests)} test files for {len(inputs)} inputs; give one per input, in order")
        return oofs, tests
    from_dirs = [folder_files(path)[1] for path in inputs if path.is_dir()]
    if from_dirs and len(from_dirs) == len(inputs) and all(p.exists() for p in from_dirs):
        return oofs, from_dirs
    return oofs, None


def load_label_map(path: Path | None) -> LabelMap:
    if path is None:
        return {}
    raw = read_yaml_file(path, "label map")
    if not isinstance(raw, dict) or not all(isinstance(v, list) and v for v in raw.values()):
        raise InputError(f"{path}: expected 'source_label: [target_label, ...]' lines")
    return {str(k): [str(v) for v in values] for k, values in raw.items()}


def output_paths(out: Path, with_test: bool) -> dict[str, Path]:
    """What `--out ens.csv` writes: the predictions, their OOF twin when they are test rows, the summary."""
    paths = {"--out": out}
    if with_test:
        paths["the OOF predictions"] = out.with_name(out.stem + ".oof.csv")
    paths["the summary"] = out.with_suffix(".json")
    return paths


def _named_inputs(oofs: list[Path], tests: list[Path] | None, request: EnsembleRequest) -> dict[str, Path | None]:
    named: dict[str, Path | None] = {f"input {i + 1}": path for i, path in enumerate(oofs)}
    named |= {f"--test {i + 1}": path for i, path in enumerate(tests or [])}
    return named | {"--rules": request.rules, "--label-map": request.label_map}


def requested_method(name: str) -> Method:
    if name not in known_methods():
        raise InputError(f"--method must be one of {known_methods()}, got '{name}'")
    return get_method(name)


def _check_rules_wanted(request: EnsembleRequest, method: Method) -> None:
    if method.needs_rules and request.rules is None:
        raise InputError(f"--method {request.method} needs --rules FILE.yaml")
    if request.rules is not None and not method.needs_rules:
        raise InputError(f"--rules is for --method rules (the file names its base blend), not --method "
                         f"{request.method}")


def run_ensemble(request: EnsembleRequest) -> EnsembleResult:
    # Imported here: the CLI's parser lists this module's methods without loading scikit-learn.
    from mmtune.ensemble.blend import CALIBRATE, BlendRequest, blend, blend_method
    from mmtune.ensemble.rules import load_rules

    method = requested_method(request.method)
    if request.calibrate not in CALIBRATE:
        raise InputError(f"--calibrate must be one of {[c for c in CALIBRATE if c]}, got '{request.calibrate}'")
    _check_rules_wanted(request, method)
    oof_paths, test_paths = resolve_inputs(request.inputs, request.tests)
    check_outputs(output_paths(request.out, with_test=test_paths is not None),
                  _named_inputs(oof_paths, test_paths, request))
    mapping = load_label_map(request.label_map)
    needs_gold = method.needs_gold or request.calibrate
    oof_preds = [read_predictions(p, need_gold=needs_gold) for p in oof_paths]
    oof = align(oof_preds, mapping)
    priors = gold_priors(oof.gold, oof.labels) if oof.gold is not None else None
    test = None
    if test_paths is not None:
        test = align([read_predictions(p) for p in test_paths], mapping, labels=oof.labels, priors=priors)
    rules = load_rules(request.rules, oof.labels) if request.rules else None
    if blend_method(method, rules).fitted_on_gold:
        check_same_folds(oof_preds, f"--method {request.method}")
    blended = blend(BlendRequest(request.method, rules, request.calibrate, request.seed, request.force_rules), oof,
                    test)
    # Their weights act between the groups their labels map to, never inside one (ensemble/inputs.map_labels).
    blended.summary["label_mapped_inputs"] = [i for i, p in enumerate(oof_preds) if set(p.labels) != set(oof.labels)]
    for warning in blended.summary["warnings"]:
        log.warning(warning)
    return _write(request, oof, test, blended, (mapping, priors))


def _write(request: EnsembleRequest, oof: Members, test: Members | None, blended: Blend,
           mapped: tuple[LabelMap, np.ndarray | None]) -> EnsembleResult:
    """The predictions, and the summary with the saved blend; `mapped`: the label map and the priors it used."""
    from mmtune.ensemble.saved import Source, blend_record

    out = request.out
    paths = output_paths(out, with_test=test is not None)
    oof_out = paths.get("the OOF predictions", out)
    write_predictions(oof_out, Predictions(oof.ids, blended.oof_probs, oof.labels, gold=oof.gold, folds=oof.folds))
    if test is not None and blended.test_probs is not None:
        write_predictions(out, Predictions(test.ids, blended.test_probs, test.labels))
    summary = blended.summary | {"outputs": {"predictions": str(out), "oof": str(oof_out),
                                             "summary": str(paths["the summary"])}}
    sources = [Source(*model_source(path)) for path in request.inputs]
    summary["blend"] = blend_record(blended.fitted, sources, *mapped, oof.gold, paths["the summary"])
    write_text_atomic(paths["the summary"], json.dumps(summary, indent=1))
    return EnsembleResult(out=out, oof_out=oof_out if test is not None else None, summary=summary)
