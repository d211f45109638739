import pytest

from mmtune.sarcasm import SARCASM_LABELS, is_sarcasm_scheme, to_bits


def test_the_sarcasm_scheme_is_the_four_labels_in_any_order():
    assert is_sarcasm_scheme(sorted(SARCASM_LABELS)) and is_sarcasm_scheme(list(SARCASM_LABELS))
    assert not is_sarcasm_scheme(["not-sarcasm", "image-sarcasm"])
    assert not is_sarcasm_scheme([*SARCASM_LABELS, "other"])


def test_multi_sarcasm_is_both_bits():
    assert to_bits("multi-sarcasm") == (1, 1) and to_bits("not-sarcasm") == (0, 0)
    assert to_bits("text-sarcasm") == (1, 0) and to_bits("image-sarcasm") == (0, 1)
    with pytest.raises(ValueError, match="not one of the sarcasm labels"):
        to_bits("sarcasm")
