"""Many members' predictions -> one: a registered method fitted on the OOF rows (and applied to the test rows),
the optional macro-F1 calibration, then the priority rules. What was fitted is a `FittedBlend`: applied to the
test rows here, and to a new file's rows by `mmtune predict ENSEMBLE.json` (ensemble/saved.py).

Every figure reported on the OOF rows is out-of-sample: a blend or calibration fitted on gold labels is scored by
nested CV (ensemble/nested.py), and the ensemble's OOF file holds those nested predictions, so it can be blended
or stacked again. Each input's OOF macro-F1 stands beside the blend's, with a warning when the blend is worse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from mmtune.ensemble.inputs import Members
from mmtune.ensemble.methods import Method, get_method
from mmtune.ensemble.nested import cross_fitted, describe_splits
from mmtune.ensemble.rules import RuleSet, apply_rules, judge_rules
from mmtune.evaluation.calibration import MacroF1Calibrator, macro_f1, nested_gain

CALIBRATE = (None, "auto", "always")
UNFITTED = "as it is: nothing was fitted on gold labels"


@dataclass
class BlendRequest:
    method: str  # a known method's name
    rules: RuleSet | None = None
    calibrate: str | None = None  # None | auto (biases only when nested CV says they help) | always
    seed: int = 0
    force_rules: bool = False  # apply rules that lower OOF macro-F1 too


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
        return self.apply_rows(np.transpose(members.probs, (1, 0, 2)))

    def apply_rows(self, X: np.ndarray) -> np.ndarray:
        """[N, K] blended probabilities of [N, M, K] member rows."""
        probs = self.blender.predict_proba(X)
        if self.calibrator is not None:
            probs = self.calibrator.predict_proba(probs)
        if self.rules is not None:
            probs, _ = apply_rules(X, probs, self.rules.rules, self.labels)
        return probs


@dataclass
class Blend:
    oof_probs: np.ndarray  # out-of-sample: see the module's docstring
    test_probs: np.ndarray | None
    summary: dict[str, Any]
    fitted: FittedBlend


def blend_method(method: Method, rules: RuleSet | None) -> Method:
    """The method whose blender fits the OOF rows: its own, or the rules file's `base:` one."""
    return get_method(rules.base) if method.needs_rules and rules is not None else method


def blend(request: BlendRequest, oof: Members, test: Members | None) -> Blend:
    """Fit the method (and calibration) on every OOF row for the test rows; score it out-of-sample on the OOF
    rows; then judge the rules on those out-of-sample rows and keep the ones that do not hurt."""
    # Nested CV fits hundreds of small models ([N, M*K] features): BLAS threads only contend there. One
    # logistic regression took 4.9 s with the default threads and 0.21 s with one on a loaded 2-core machine.
    with threadpool_limits(limits=1):
        return _blend(request, oof, test)


def _blend(request: BlendRequest, oof: Members, test: Members | None) -> Blend:
    method, rules = blend_method(get_method(request.method), request.rules), request.rules
    X = np.transpose(oof.probs, (1, 0, 2))
    y = oof.targets() if oof.gold is not None else None
    groups = np.array(oof.folds) if oof.folds is not None else None
    fitted, calibration = _fit(request, method, X, y, groups, oof.labels)
    oof_probs, scored = _out_of_sample(request, method, X, y, groups, fitted)
    summary: dict[str, Any] = {"method": request.method, "inputs": [str(p) for p in oof.paths],
                               "labels": oof.labels, "n_oof": len(oof.ids)}
    summary |= method.fitted(fitted.blender)
    if calibration is not None:
        summary["calibration"] = calibration
    if y is not None:
        # The rules come last, so that they decide the posts they fire on as written.
        if rules is not None:
            kept, summary["rules"] = judge_rules(X, oof_probs, rules.rules, oof.labels, y, request.force_rules)
            fitted.rules = RuleSet(rules.base, kept)
            oof_probs, _ = apply_rules(X, oof_probs, kept, oof.labels)
        summary["members_oof_macro_f1"] = [macro_f1(oof.probs[m], y) for m in range(len(oof.paths))]
        summary["ensemble_oof_macro_f1"] = macro_f1(oof_probs, y)
        summary["ensemble_oof_scored"] = scored
    summary["warnings"] = blend_warnings(summary)
    # The test rows go through the very object a saved blend is rebuilt as: the same steps, in the same order.
    return Blend(oof_probs, fitted.apply(test) if test is not None else None, summary, fitted)


def _fit(request: BlendRequest, method: Method, X: np.ndarray, y: np.ndarray | None, groups: np.ndarray | None,
         labels: list[str]) -> tuple[FittedBlend, dict[str, Any] | None]:
    """The blender, then the calibration of its output, fitted on these rows (no rules: they are judged after)."""
    blender = method.fit(method.build(request.seed), X, y, groups)
    fitted = FittedBlend(request.method, labels, blender)
    if not request.calibrate:
        return fitted, None
    fitted.calibrator, info = _calibrate(blender.predict_proba(X), y, groups, labels, request.seed,
                                         always=request.calibrate == "always")
    return fitted, info


def _out_of_sample(request: BlendRequest, method: Method, X: np.ndarray, y: np.ndarray | None,
                   groups: np.ndarray | None, fitted: FittedBlend) -> tuple[np.ndarray, str]:
    """The OOF rows' blend, each fold by a blend (and calibration) fitted without it; and how, in words."""
    if y is None or not (method.fitted_on_gold or request.calibrate):
        return fitted.apply_rows(X), UNFITTED

    def fit_predict(fit_rows: np.ndarray, held_rows: np.ndarray) -> np.ndarray:
        inner = groups[fit_rows] if groups is not None else None
        return _fit(request, method, X[fit_rows], y[fit_rows], inner, fitted.labels)[0].apply_rows(X[held_rows])

    return cross_fitted(fit_predict, y, groups, request.seed, X.shape[2]), describe_splits(y, groups)


def _calibrate(probs: np.ndarray, y: np.ndarray, groups: np.ndarray | None, labels: list[str], seed: int,
               always: bool) -> tuple[MacroF1Calibrator, dict[str, Any]]:
    """Temperature always; the macro-F1 biases when the nested-CV estimate of their gain is positive
    (or `always`): biases fitted on a few hundred OOF rows can chase noise, and nested CV tells."""
    nested = nested_gain(probs, y, seed=seed, groups=groups)
    use_biases = always or nested["gain"] > 0
    calibrator = MacroF1Calibrator(biases=use_biases).fit(probs, y)
    info = calibrator.to_dict(labels)
    # Fitted and scored on the same rows: kept for the record, under a name that says so.
    in_sample = {"macro_f1_before": info.pop("oof_macro_f1_before"), "macro_f1_after": info.pop("oof_macro_f1_after")}
    return calibrator, info | {"nested_cv": nested, "biases_applied": use_biases, "in_sample": in_sample}


def blend_warnings(summary: dict[str, Any]) -> list[str]:
    """What the user must not miss: a blend below its best input, a rule that lowers OOF macro-F1."""
    warnings = []
    members, ensemble = summary.get("members_oof_macro_f1"), summary.get("ensemble_oof_macro_f1")
    if members and ensemble is not None and ensemble < max(members):
        best = int(np.argmax(members))
        instead = "" if summary["method"] == "auto" else ", or let --method auto choose"
        warnings.append(f"the ensemble ({summary['method']}) scores OOF macro-F1 {ensemble:.3f} out-of-sample, below "
                        f"input {best + 1} ({summary['inputs'][best]}) alone at {members[best]:.3f}: that input alone "
                        f"is the better choice{instead}")
    for rule in summary.get("rules", []):
        if rule["macro_f1_after"] < rule["macro_f1_before"]:
            done = "applied anyway (--force-rules)" if rule["applied"] else "not applied (--force-rules applies it)"
            warnings.append(f"rule '{rule['rule']}' lowers OOF macro-F1 {rule['macro_f1_before']:.3f} -> "
                            f"{rule['macro_f1_after']:.3f}: {done}")
    return warnings
