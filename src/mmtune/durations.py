"""Durations written by people (`train.time_budget: 11h30m`) -> seconds. Standard library only: the config
checks them without loading the training package."""

from __future__ import annotations

import re

from mmtune.errors import InputError

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")


def parse_duration(text: str, key: str = "train.time_budget") -> float:
    """'11h30m' / '90m' / '45s' / '1d2h' / a plain number of seconds -> seconds."""
    cleaned = text.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", cleaned):
        return float(cleaned)
    parts = _PART.findall(cleaned)
    if not parts or "".join(n + u for n, u in parts) != cleaned:
        raise InputError(f"{key}: cannot read duration '{text}' (examples: 11h30m, 90m, 3600)")
    return sum(float(number) * _UNITS[unit] for number, unit in parts)


def budget_seconds(text: str | None) -> float | None:
    """`train.time_budget` in seconds; None (no budget) when it is not set."""
    return parse_duration(text) if text else None
