from mmtune.data.labels import infer_labels


def test_inferred_label_order_is_sorted_and_ignores_null():
    assert infer_labels(["text-sarcasm", None, "not-sarcasm", "image-sarcasm", "not-sarcasm"]) == [
        "image-sarcasm", "not-sarcasm", "text-sarcasm"]
