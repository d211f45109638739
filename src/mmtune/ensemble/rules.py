"""Declarative priority rules over the members' probabilities, e.g. "image-sarcasm when any model gives it >= 0.5".

A rules file (YAML):

    base: mean            # the blend the rules override: a method whose module sets rules_base (ensemble/methods)
    rules:                # in priority order: the first rule that fires decides the post
      - label: image-sarcasm
        when: any         # any | all | mean (of the members' probabilities of `label`)
        min_prob: 0.5
      - label: text-sarcasm
        when: mean
        min_prob: 0.3

Rules are applied exactly as written. A fired post gets `label` as its top class: its probability
swaps places with the previous top one, so the row stays a distribution whose argmax is the rule's label.
Each rule is scored on OOF first (how often it fires, how often it is right, how many decisions it changes,
macro-F1 before/after); one that lowers OOF macro-F1 is not applied unless forced (--force-rules).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mmtune.config import read_yaml_file
from mmtune.ensemble.methods import rules_bases
from mmtune.errors import InputError
from mmtune.evaluation.calibration import macro_f1

WHEN = ("any", "all", "mean")


@dataclass(frozen=True)
class Rule:
    label: str
    when: Literal["any", "all", "mean"]
    min_prob: float

    def describe(self) -> str:
        return f"{self.label} when {self.when} member p >= {self.min_prob:g}"

    def fires(self, members: np.ndarray, labels: list[str]) -> np.ndarray:
        """[N] mask over [N, M, K] member probabilities."""
        column = members[:, :, labels.index(self.label)]
        if self.when == "any":
            return (column >= self.min_prob).any(axis=1)
        if self.when == "all":
            return (column >= self.min_prob).all(axis=1)
        return column.mean(axis=1) >= self.min_prob


@dataclass(frozen=True)
class RuleSet:
    base: str
    rules: tuple[Rule, ...]


def load_rules(path: str | Path, labels: list[str]) -> RuleSet:
    return parse_rules(read_yaml_file(path, "rules file"), labels, str(path))


def parse_rules(raw: Any, labels: list[str], source: str = "rules", allow_empty: bool = False) -> RuleSet:
    """`allow_empty`: a saved blend whose every rule lowered OOF macro-F1 keeps none of them."""
    if not isinstance(raw, dict) or not isinstance(raw.get("rules"), list) or not (raw["rules"] or allow_empty):
        raise InputError(f"{source}: expected a mapping with a non-empty 'rules' list")
    unknown = sorted(set(raw) - {"base", "rules"})
    if unknown:
        raise InputError(f"{source}: unknown key '{unknown[0]}' (known: base, rules)")
    base = raw.get("base", "mean")
    if base not in rules_bases():
        raise InputError(f"{source}: 'base' must be one of {rules_bases()}, got {base!r}")
    return RuleSet(base=base, rules=tuple(_rule(item, labels, f"{source}: rules[{i}]")
                                          for i, item in enumerate(raw["rules"])))


def _rule(item: Any, labels: list[str], where: str) -> Rule:
    if not isinstance(item, dict) or set(item) - {"label", "when", "min_prob"} or "label" not in item:
        raise InputError(f"{where}: expected keys label, when, min_prob")
    if item["label"] not in labels:
        raise InputError(f"{where}: label '{item['label']}' is not one of {labels}")
    when = item.get("when", "any")
    if when not in WHEN:
        raise InputError(f"{where}: 'when' must be one of {list(WHEN)}, got {when!r}")
    threshold = item.get("min_prob")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise InputError(f"{where}: 'min_prob' must be a number in [0, 1], got {threshold!r}")
    return Rule(label=item["label"], when=when, min_prob=float(threshold))


def apply_rules(members: np.ndarray, blended: np.ndarray, rules: tuple[Rule, ...] | list[Rule],
                labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The blended [N, K] rows with the rules applied, and [N] index of the rule that decided (-1: none)."""
    out = np.array(blended, dtype=np.float64, copy=True)
    decided = np.full(len(out), -1)
    for index, rule in enumerate(rules):
        rows = np.flatnonzero(rule.fires(members, labels) & (decided < 0))
        decided[rows] = index
        k = labels.index(rule.label)
        top = out[rows].argmax(axis=1)
        swap = rows[top != k]
        top = top[top != k]
        out[swap, k], out[swap, top] = out[swap, top], out[swap, k].copy()
    return out, decided


def judge_rules(members: np.ndarray, blended: np.ndarray, rules: tuple[Rule, ...], labels: list[str],
                targets: np.ndarray, force: bool = False) -> tuple[tuple[Rule, ...], list[dict[str, Any]]]:
    """The rules to apply and, per rule in priority order on the OOF rows (after the rules kept before it): the
    posts it decides (`fires`), how many of those it is right on, how many decisions it changes (a post the
    blend already gave its label is decided but not changed) and macro-F1 before/after it. A rule that lowers
    macro-F1 is not kept unless `force`: a hand-written rule that hurts on OOF is not applied silently."""
    kept: list[Rule] = []
    current, before = blended, macro_f1(blended, targets)
    rows = []
    for rule in rules:
        applied, decided = apply_rules(members, blended, (*kept, rule), labels)
        mine = decided == len(kept)
        after = macro_f1(applied, targets)
        keep = after >= before or force
        rows.append({"rule": rule.describe(), "fires": int(mine.sum()),
                     "correct": int((targets[mine] == labels.index(rule.label)).sum()),
                     "changed": int((applied.argmax(axis=1) != current.argmax(axis=1)).sum()),
                     "macro_f1_before": before, "macro_f1_after": after, "applied": keep})
        if keep:
            kept.append(rule)
            current, before = applied, after
    return tuple(kept), rows
