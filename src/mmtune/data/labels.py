"""Label lists, and the two-bit view of the 4-class sarcasm scheme.

Label order rule (documented in the README): `data.labels` when the config gives it, otherwise the
distinct labels of the training file sorted by Unicode code point. Sorting, not first appearance or
frequency, keeps the order the same across files, folds and runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

NOT, MULTI, IMAGE, TEXT = "not-sarcasm", "multi-sarcasm", "image-sarcasm", "text-sarcasm"
SARCASM_LABELS = (NOT, MULTI, IMAGE, TEXT)
# (text is sarcastic, image is sarcastic): multi-sarcasm needs both modalities.
SARCASM_BITS: dict[str, tuple[int, int]] = {NOT: (0, 0), TEXT: (1, 0), IMAGE: (0, 1), MULTI: (1, 1)}
BITS_TO_LABEL = {bits: label for label, bits in SARCASM_BITS.items()}


def infer_labels(labels: Iterable[str | None]) -> list[str]:
    """The sorted distinct non-null labels."""
    return sorted({label for label in labels if label is not None})


def to_bits(label: str) -> tuple[int, int]:
    """4-class sarcasm label -> (text_sarcastic, image_sarcastic)."""
    try:
        return SARCASM_BITS[label]
    except KeyError:
        raise ValueError(f"'{label}' is not one of the sarcasm labels {list(SARCASM_LABELS)}") from None


def from_bits(text_sarcastic: int, image_sarcastic: int) -> str:
    return BITS_TO_LABEL[(int(bool(text_sarcastic)), int(bool(image_sarcastic)))]


def bit_probs_to_class_probs(p_text: np.ndarray, p_image: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """[N] P(text sarcastic), [N] P(image sarcastic) -> [N, K] probabilities in `labels` order.

    The bits are treated as independent given the post, so the four products sum to 1.
    """
    p_text, p_image = np.asarray(p_text, dtype=np.float64), np.asarray(p_image, dtype=np.float64)
    columns = []
    for label in labels:
        t, i = to_bits(label)
        columns.append((p_text if t else 1 - p_text) * (p_image if i else 1 - p_image))
    return np.stack(columns, axis=-1)


def class_probs_to_bit_probs(probs: np.ndarray, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """[N, K] class probabilities -> marginal P(text sarcastic), P(image sarcastic)."""
    probs = np.asarray(probs, dtype=np.float64)
    text_mask = np.array([to_bits(label)[0] for label in labels], dtype=bool)
    image_mask = np.array([to_bits(label)[1] for label in labels], dtype=bool)
    return probs[:, text_mask].sum(axis=1), probs[:, image_mask].sum(axis=1)
