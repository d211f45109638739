"""Many members' predictions -> one: a registered method fitted on the OOF rows (and applied to the test rows),
the optional macro-F1 calibration, then the priority rules. What was fitted is a `FittedBlend`: applied to the
test rows here, and to a new file's rows by `mmtune predict ENSEMBLE.json` (ensemble/saved.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mmtune.ensemble.inputs import Members
from mmtune.ensemble.methods import Method, get_method
from mmtune.ensemble.rules import RuleSet, apply_rules, score_rules
from mmtune.evaluation.calibration import MacroF1Calibrator, macro_f1, nested_gain

CALIBRATE = (None, "auto", "always")


@dataclass
class BlendRequest:
    method: str  # a known method's name
    rules: RuleSet | None = None
    calibrate: str | None = None  # None | auto (biases only when nested CV says they help) | always
    seed: int = 0


@dataclass
class FittedBlend:
    """A blend ready for any aligned members: the fitted blender, then the calibration, then the rules."""

    method: str  # as requested (`rules` blends with its rules file's `base:` method)
    labels: list[str]
    blender: Any
    calibrator: MacroF1Calibrator | None = None
    rules: RuleSet | None = None

    def apply(self, members: Members) -> np.ndarray:
        """[N, K] blended probabilities of members aligned to `labels` (probs [M, N, K])."""
        X = np.transpose(members.probs, (1, 0, 2))
        probs = self.blender.predict_proba(X)
        if self.calibrator is not None:
            probs = self.calibrator.predict_proba(probs)
        if self.rules is not None:
            probs, _ = apply_rules(X, probs, self.rules.rules, self.labels)
        return probs


@dataclass
class Blend:
    oof_probs: np.ndarray
    test_probs: np.ndarray | None
    summary: dict[str, Any]
    fitted: FittedBlend


def blend_method(method: Method, rules: RuleSet | None) -> Method:
    """The method whose blender fits the OOF rows: its own, or the rules file's `base:` one."""
    return get_method(rules.base) if method.needs_rules and rules is not None else method


def blend(request: BlendRequest, oof: Members, test: Members | None) -> Blend:
    """Fit the method on the OOF rows, apply it to the test rows; then the calibration, then the rules."""
    method, rules = blend_method(get_method(request.method), request.rules), request.rules
    X = np.transpose(oof.probs, (1, 0, 2))
    y = oof.targets() if oof.gold is not None else None
    blender = method.build(request.seed)
    oof_probs = method.fit_oof(blender, X, y, np.array(oof.folds) if oof.folds is not None else None)
    fitted = FittedBlend(request.method, oof.labels, blender, rules=rules)
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
        fitted.calibrator, summary["calibration"] = _calibrate(oof, y, oof_probs, request.seed,
                                                               always=request.calibrate == "always")
        oof_probs = fitted.calibrator.predict_proba(oof_probs)
        # Biases fitted on the OOF rows and applied to them: those rows are no longer out-of-fold for a later
        # blend or stack (the honest figure is calibration.nested_cv).
        if summary["calibration"]["biases_applied"]:
            summary["ensemble_oof_is_in_sample"] = True
    if rules is not None:
        oof_before = oof_probs
        oof_probs, _ = apply_rules(X, oof_probs, rules.rules, oof.labels)
        if y is not None:
            summary["rules"] = score_rules(X, oof_before, rules.rules, oof.labels, y)
            summary["ensemble_oof_macro_f1"] = macro_f1(oof_probs, y)
    # The test rows go through the very object a saved blend is rebuilt as: the same steps, in the same order.
    return Blend(oof_probs, fitted.apply(test) if test is not None else None, summary, fitted)


def _calibrate(oof: Members, y: np.ndarray, oof_probs: np.ndarray, seed: int,
               always: bool) -> tuple[MacroF1Calibrator, dict[str, Any]]:
    """Temperature always; the macro-F1 biases when the nested-CV estimate of their gain is positive
    (or `always`): biases fitted on a few hundred OOF rows can chase noise, and nested CV tells."""
    groups = np.array(oof.folds) if oof.folds is not None else None
    nested = nested_gain(oof_probs, y, seed=seed, groups=groups)
    use_biases = always or nested["gain"] > 0
    calibrator = MacroF1Calibrator(biases=use_biases).fit(oof_probs, y)
    info = calibrator.to_dict(oof.labels) | {"nested_cv": nested, "biases_applied": use_biases}
    return calibrator, info
