"""Label lists.

Label order rule (documented in the README): `data.labels` when the config gives it, otherwise the
distinct labels of the training file sorted by Unicode code point. Sorting, not first appearance or
frequency, keeps the order the same across files, folds and runs.
"""

from __future__ import annotations

from collections.abc import Iterable


def infer_labels(labels: Iterable[str | None]) -> list[str]:
    """The sorted distinct non-null labels."""
    return sorted({label for label in labels if label is not None})
