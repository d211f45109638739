import json

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
)

from mmtune.errors import InputError
from mmtune.evaluation.metrics import METRICS, evaluate_probs, is_better, selection_value

LABELS = ["image-sarcasm", "multi-sarcasm", "not-sarcasm", "text-sarcasm"]
# 8 posts; predictions (argmax) are 2 1 2 0 1 2 2 1 against gold 2 1 2 0 0 1 3 1
PROBS = np.array([
    [0.1, 0.1, 0.7, 0.1],
    [0.1, 0.6, 0.2, 0.1],
    [0.0, 0.2, 0.8, 0.0],
    [0.5, 0.2, 0.2, 0.1],
    [0.3, 0.4, 0.2, 0.1],
    [0.1, 0.3, 0.5, 0.1],
    [0.1, 0.1, 0.5, 0.3],
    [0.2, 0.5, 0.2, 0.1],
])
GOLD = np.array([2, 1, 2, 0, 0, 1, 3, 1])
PRED = PROBS.argmax(axis=1)


def test_matches_sklearn_on_a_hand_example():
    result = evaluate_probs(PROBS, GOLD, LABELS)
    assert result["n"] == 8
    assert result["accuracy"] == pytest.approx(accuracy_score(GOLD, PRED)) == pytest.approx(5 / 8)
    assert result["macro_f1"] == pytest.approx(f1_score(GOLD, PRED, average="macro"))
    assert result["weighted_f1"] == pytest.approx(f1_score(GOLD, PRED, average="weighted"))
    assert result["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(GOLD, PRED))
    assert result["log_loss"] == pytest.approx(log_loss(GOLD, np.clip(PROBS, 1e-7, 1) / np.clip(PROBS, 1e-7, 1).sum(
        axis=1, keepdims=True)))
    precision, recall, f1, support = precision_recall_fscore_support(GOLD, PRED, zero_division=0)
    for k, label in enumerate(LABELS):
        assert result["per_class"][label] == pytest.approx(
            {"precision": precision[k], "recall": recall[k], "f1": f1[k], "support": support[k]})
    assert result["confusion"] == confusion_matrix(GOLD, PRED).tolist()
    # hand check: gold image-sarcasm (row 0) was predicted image once and multi once
    assert result["confusion"][0] == [1, 1, 0, 0]


def test_perfect_predictions():
    probs = np.eye(4)[GOLD]
    result = evaluate_probs(probs, GOLD, LABELS)
    for metric in ("macro_f1", "accuracy", "weighted_f1", "balanced_accuracy"):
        assert result[metric] == 1.0, metric
    assert result["log_loss"] < 1e-6


def test_class_never_predicted_or_absent_still_has_a_row():
    gold = np.array([0, 0, 1, 3])  # label 2 absent from gold, label 3 never predicted
    probs = np.array([[0.9, 0.1, 0, 0], [0.2, 0.7, 0.1, 0], [0, 0.6, 0.4, 0], [0, 0, 0.8, 0.2]])
    result = evaluate_probs(probs, gold, LABELS)
    assert np.array(result["confusion"]).shape == (4, 4)
    assert result["confusion"][2] == [0, 0, 0, 0] and result["confusion"][3] == [0, 0, 1, 0]
    assert result["per_class"]["text-sarcasm"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert result["per_class"]["not-sarcasm"]["support"] == 0
    # all K labels are averaged, so the absent and never-predicted classes both count as 0
    assert result["macro_f1"] == pytest.approx(f1_score(gold, probs.argmax(1), labels=range(4), average="macro",
                                                        zero_division=0))
    assert result["balanced_accuracy"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert np.isfinite(result["log_loss"])


def test_result_is_json_serialisable_with_plain_types():
    result = evaluate_probs(PROBS.astype(np.float32), GOLD.astype(np.int64), LABELS)
    assert json.loads(json.dumps(result)) == result
    assert all(type(result[key]) is float for key in METRICS)
    assert type(result["n"]) is int and type(result["per_class"]["not-sarcasm"]["support"]) is int


@pytest.mark.parametrize(("probs", "gold", "message"), [
    (PROBS[:, :3], GOLD, "shape"),
    (PROBS, GOLD[:5], "targets must have shape"),
    (PROBS, GOLD + 1, "label indices"),
    (np.full((2, 4), np.nan), np.array([0, 1]), "NaN"),
    (np.zeros((0, 4)), np.zeros(0, dtype=int), "no examples"),
])
def test_bad_inputs_are_refused(probs, gold, message):
    with pytest.raises(ValueError, match=message):
        evaluate_probs(probs, gold, LABELS)


@pytest.mark.parametrize(("metric", "new", "best", "better"), [
    ("macro_f1", 0.5, None, True),
    ("macro_f1", 0.6, 0.5, True),
    ("macro_f1", 0.5, 0.5, False),
    ("macro_f1", 0.4, 0.5, False),
    ("macro_f1", float("nan"), 0.5, False),
    ("balanced_accuracy", 0.7, 0.6, True),
    ("log_loss", 0.4, 0.5, True),
    ("log_loss", 0.6, 0.5, False),
    ("log_loss", 0.6, None, True),
])
def test_is_better(metric, new, best, better):
    assert is_better(metric, new, best) is better


def test_selection_value_and_unknown_metric():
    result = evaluate_probs(PROBS, GOLD, LABELS)
    assert selection_value(result, "macro_f1") == result["macro_f1"]
    for call in (lambda: selection_value(result, "f1"), lambda: is_better("auc", 0.1, None)):
        with pytest.raises(InputError, match="train.metric"):
            call()
