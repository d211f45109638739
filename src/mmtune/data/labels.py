"""Label lists, and the two-bit view of the 4-class sarcasm scheme.

Label order rule (documented in the README): `data.labels` when the config gives it, otherwise the
distinct labels of the training file sorted by Unicode code point. Sorting, not first appearance or
frequency, keeps the order the same across files, folds and runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

NOT, MULTI, IMAGE, TEXT = "not-sarcasm", "multi-sarcasm", "image-sarcasm", "text-sarcasm"
SARCASM_LABELS = (NOT, MULTI, IMAGE, TEXT)
# (text is sarcastic, image is sarcastic): multi-sarcasm needs both modalities.
SARCASM_BITS: dict[str, tuple[int, int]] = {NOT: (0, 0), TEXT: (1, 0), IMAGE: (0, 1), MULTI: (1, 1)}


def infer_labels(labels: Iterable[str | None]) -> list[str]:
    """The sorted distinct non-null labels."""
    return sorted({label for label in labels if label is not None})


def to_bits(label: str) -> tuple[int, int]:
    """4-class sarcasm label -> (text_sarcastic, image_sarcastic)."""
    try:
        return SARCASM_BITS[label]
    except KeyError:
        raise ValueError(f"'{label}' is not one of the sarcasm labels {list(SARCASM_LABELS)}") from None


def is_sarcasm_scheme(labels: Sequence[str]) -> bool:
    """Whether `labels` are exactly the 4 sarcasm labels (in any order): what the two-bit view needs."""
    return len(labels) == len(SARCASM_LABELS) and set(labels) == set(SARCASM_LABELS)
