"""`mmtune ensemble`: many prediction files -> one, fitted on OOF files, applied to their test files.

Inputs are OOF files (`oof.csv`: with gold and fold) or cv folders (their oof.csv and test.csv).
Outputs, for `--out ens.csv`: `ens.csv` (the ensemble of the test files, or of the inputs when there
are none), `ens.oof.csv` (the ensemble's OOF predictions, when `ens.csv` holds test rows) and
`ens.json` (what was fitted and how every member and the ensemble score on OOF).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmtune.config import read_yaml_file
from mmtune.ensemble.inputs import LabelMap, Members, align, gold_priors
from mmtune.ensemble.methods import Method, get_method, known_methods
from mmtune.ensemble.rules import RuleSet, apply_rules, load_rules, score_rules
from mmtune.errors import InputError
from mmtune.evaluation.calibration import MacroF1Calibrator, macro_f1, nested_gain
from mmtune.evaluation.folders import OOF_FILE, TEST_FILE
from mmtune.evaluation.predictions import Predictions, read_predictions, write_predictions
from mmtune.outputs import check_outputs, write_text_atomic

CALIBRATE = (None, "auto", "always")


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


@dataclass
class EnsembleResult:
    out: Path
    oof_out: Path | None
    summary: dict[str, Any] = field(default_factory=dict)


def resolve_inputs(inputs: list[Path], tests: list[Path] | None) -> tuple[list[Path], list[Path] | None]:
    """CV folders stand for their oof.csv (and test.csv); `--test` files pair with the inputs in order."""
    oofs = [path / OOF_FILE if path.is_dir() else path for path in inputs]
    if tests is not None:
        if len(tests) != len(inputs):
            raise InputError(f"--test: {len(tests)} test files for {len(inputs)} inputs; give one per input, in order")
        return oofs, tests
    from_dirs = [path / TEST_FILE for path in inputs if path.is_dir()]
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


def blend_method(method: Method, rules: RuleSet | None) -> Method:
    """The method whose blender fits the OOF rows: its own, or the rules file's `base:` one."""
    return get_method(rules.base) if method.needs_rules and rules is not None else method


def run_ensemble(request: EnsembleRequest) -> EnsembleResult:
    method = requested_method(request.method)
    if request.calibrate not in CALIBRATE:
        raise InputError(f"--calibrate must be one of {[c for c in CALIBRATE if c]}, got '{request.calibrate}'")
    if method.needs_rules and request.rules is None:
        raise InputError(f"--method {request.method} needs --rules FILE.yaml")
    oof_paths, test_paths = resolve_inputs(request.inputs, request.tests)
    check_outputs(output_paths(request.out, with_test=test_paths is not None),
                  _named_inputs(oof_paths, test_paths, request))
    mapping = load_label_map(request.label_map)
    needs_gold = method.needs_gold or request.calibrate
    oof = align([read_predictions(p, need_gold=needs_gold) for p in oof_paths], mapping)
    test = None
    if test_paths is not None:
        priors = gold_priors(oof.gold, oof.labels) if oof.gold is not None else None
        test = align([read_predictions(p) for p in test_paths], mapping, labels=oof.labels, priors=priors)
    rules = load_rules(request.rules, oof.labels) if request.rules else None
    return _fit_and_write(request, blend_method(method, rules), oof, test, rules)


def _fit_and_write(request: EnsembleRequest, method: Method, oof: Members, test: Members | None,
                   rules: RuleSet | None) -> EnsembleResult:
    X = np.transpose(oof.probs, (1, 0, 2))
    y = oof.targets() if oof.gold is not None else None
    blender = method.build(request.seed)
    oof_probs = method.fit_oof(blender, X, y, np.array(oof.folds) if oof.folds is not None else None)
    test_X = np.transpose(test.probs, (1, 0, 2)) if test is not None else None
    test_probs = blender.predict_proba(test_X) if test_X is not None else None
    summary: dict[str, Any] = {"method": request.method, "inputs": [str(p) for p in oof.paths],
                               "labels": oof.labels, "n_oof": len(oof.ids)}
    summary |= method.fitted(blender)
    if y is not None:
        summary["members_oof_macro_f1"] = [macro_f1(oof.probs[m], y) for m in range(len(oof.paths))]
        summary["ensemble_oof_macro_f1"] = macro_f1(oof_probs, y)
        # Stacking's OOF is cross-validated; fitted weights are scored on the rows they were fitted on.
        summary["ensemble_oof_is_in_sample"] = method.in_sample
    # Calibration maps the base blend; the rules come last, so that they decide the posts they fire on as written.
    if request.calibrate:
        oof_probs, test_probs, summary["calibration"] = _calibrate(oof, y, oof_probs, test_probs, request.seed,
                                                                   always=request.calibrate == "always")
        # Biases fitted on the OOF rows and applied to them: those rows are no longer out-of-fold for a later
        # blend or stack (the honest figure is calibration.nested_cv).
        if summary["calibration"]["biases_applied"]:
            summary["ensemble_oof_is_in_sample"] = True
    if rules is not None:
        oof_before = oof_probs
        oof_probs, _ = apply_rules(X, oof_probs, rules.rules, oof.labels)
        if test_probs is not None:
            test_probs, _ = apply_rules(test_X, test_probs, rules.rules, oof.labels)
        if y is not None:
            summary["rules"] = score_rules(X, oof_before, rules.rules, oof.labels, y)
            summary["ensemble_oof_macro_f1"] = macro_f1(oof_probs, y)
    return _write(request, oof, test, oof_probs, test_probs, summary)


def _calibrate(oof: Members, y: np.ndarray, oof_probs: np.ndarray, test_probs: np.ndarray | None, seed: int,
               always: bool) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Temperature always; the macro-F1 biases when the nested-CV estimate of their gain is positive
    (or `always`): biases fitted on a few hundred OOF rows can chase noise, and nested CV tells."""
    groups = np.array(oof.folds) if oof.folds is not None else None
    nested = nested_gain(oof_probs, y, seed=seed, groups=groups)
    use_biases = always or nested["gain"] > 0
    calibrator = MacroF1Calibrator(biases=use_biases).fit(oof_probs, y)
    info = calibrator.to_dict(oof.labels) | {"nested_cv": nested, "biases_applied": use_biases}
    calibrated_test = calibrator.predict_proba(test_probs) if test_probs is not None else None
    return calibrator.predict_proba(oof_probs), calibrated_test, info


def _write(request: EnsembleRequest, oof: Members, test: Members | None, oof_probs: np.ndarray,
           test_probs: np.ndarray | None, summary: dict[str, Any]) -> EnsembleResult:
    out = request.out
    paths = output_paths(out, with_test=test is not None)
    oof_out = paths.get("the OOF predictions", out)
    write_predictions(oof_out, Predictions(oof.ids, oof_probs, oof.labels, gold=oof.gold, folds=oof.folds))
    if test is not None and test_probs is not None:
        write_predictions(out, Predictions(test.ids, test_probs, test.labels))
    summary["outputs"] = {"predictions": str(out), "oof": str(oof_out), "summary": str(paths["the summary"])}
    write_text_atomic(paths["the summary"], json.dumps(summary, indent=1))
    return EnsembleResult(out=out, oof_out=oof_out if test is not None else None, summary=summary)
