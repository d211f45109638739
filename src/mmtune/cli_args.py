"""Argument types of the command line: numbers with their valid range, refused by argparse on one line."""

from __future__ import annotations

import argparse
from collections.abc import Callable

SEED_MAX = 2**32 - 1  # numpy and torch seeds


def bounded_int(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return value

    parse.__name__ = "whole number"  # what argparse names in its message when int() fails
    return parse


seed = bounded_int(0, SEED_MAX)
