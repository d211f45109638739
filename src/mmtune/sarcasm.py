"""The 4-label sarcasm scheme (ViMMSD) and its two-bit view.

A foundation module (it imports nothing from mmtune): the config checks `train.loss=bits` against it, the
`bits` objective maps its outputs through it, submissions default to its labels, the demo data uses them.
"""

from __future__ import annotations

from collections.abc import Sequence

NOT, MULTI, IMAGE, TEXT = "not-sarcasm", "multi-sarcasm", "image-sarcasm", "text-sarcasm"
SARCASM_LABELS = (NOT, MULTI, IMAGE, TEXT)
# (text is sarcastic, image is sarcastic): multi-sarcasm needs both modalities.
SARCASM_BITS: dict[str, tuple[int, int]] = {NOT: (0, 0), TEXT: (1, 0), IMAGE: (0, 1), MULTI: (1, 1)}


def to_bits(label: str) -> tuple[int, int]:
    """4-class sarcasm label -> (text_sarcastic, image_sarcastic)."""
    try:
        return SARCASM_BITS[label]
    except KeyError:
        raise ValueError(f"'{label}' is not one of the sarcasm labels {list(SARCASM_LABELS)}") from None


def is_sarcasm_scheme(labels: Sequence[str]) -> bool:
    """Whether `labels` are exactly the 4 sarcasm labels (in any order): what the two-bit view needs."""
    return len(labels) == len(SARCASM_LABELS) and set(labels) == set(SARCASM_LABELS)
