import numpy as np
import pytest

from mmtune.data.labels import (
    SARCASM_LABELS,
    bit_probs_to_class_probs,
    class_probs_to_bit_probs,
    from_bits,
    infer_labels,
    to_bits,
)


def test_inferred_label_order_is_sorted_and_ignores_null():
    assert infer_labels(["text-sarcasm", None, "not-sarcasm", "image-sarcasm", "not-sarcasm"]) == [
        "image-sarcasm", "not-sarcasm", "text-sarcasm"]


@pytest.mark.parametrize("label", SARCASM_LABELS)
def test_two_bits_round_trip(label):
    assert from_bits(*to_bits(label)) == label


def test_multi_sarcasm_is_both_bits():
    assert to_bits("multi-sarcasm") == (1, 1) and to_bits("not-sarcasm") == (0, 0)
    assert to_bits("text-sarcasm") == (1, 0) and to_bits("image-sarcasm") == (0, 1)
    with pytest.raises(ValueError, match="not one of the sarcasm labels"):
        to_bits("sarcasm")


def test_bit_probabilities_map_to_a_distribution_and_back():
    labels = sorted(SARCASM_LABELS)
    p_text, p_image = np.array([0.9, 0.1, 0.5]), np.array([0.2, 0.7, 0.5])
    probs = bit_probs_to_class_probs(p_text, p_image, labels)
    assert probs.shape == (3, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    np.testing.assert_allclose(probs[0, labels.index("text-sarcasm")], 0.9 * 0.8)
    back_text, back_image = class_probs_to_bit_probs(probs, labels)
    np.testing.assert_allclose(back_text, p_text)
    np.testing.assert_allclose(back_image, p_image)
