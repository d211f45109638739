"""Ensembles fitted on OOF files: rules as written, alignment checks, label maps."""

import csv
import json

import numpy as np
import pytest
from sklearn.metrics import f1_score

from mmtune import api
from mmtune.ensemble.inputs import align
from mmtune.ensemble.rules import Rule, apply_rules, parse_rules
from mmtune.ensemble.saved import read_saved_blend
from mmtune.errors import InputError
from mmtune.evaluation.predictions import Predictions, read_predictions, write_predictions
from tests.training.conftest import run_mmtune

LABELS = ["image-sarcasm", "multi-sarcasm", "not-sarcasm", "text-sarcasm"]


def read_csv(path):
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def member(targets, strength, rng):
    logits = rng.normal(0, 1, size=(len(targets), 4))
    logits[np.arange(len(targets)), targets] += strength
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def write_oof(path, probs, targets, folds, ids=None, labels=LABELS):
    ids = ids or [str(i) for i in range(len(targets))]
    write_predictions(path, Predictions(ids, probs, labels, gold=[LABELS[t] for t in targets], folds=list(folds)))
    return path


@pytest.fixture
def oof_files(tmp_path):
    rng = np.random.default_rng(0)
    targets = rng.choice(4, size=300, p=[0.2, 0.35, 0.4, 0.05])
    folds = np.arange(300) % 5
    good = write_oof(tmp_path / "good.csv", member(targets, 2.5, rng), targets, folds)
    weak = write_oof(tmp_path / "weak.csv", member(targets, 0.3, rng), targets, folds)
    return targets, folds, good, weak


def read_probs(path):
    return np.array([[float(row[f"p_{label}"]) for label in LABELS] for row in read_csv(path)])


def test_rules_are_applied_as_written():
    members = np.array([
        [[0.6, 0.1, 0.2, 0.1], [0.1, 0.1, 0.7, 0.1]],  # one member says image >= 0.5
        [[0.2, 0.5, 0.2, 0.1], [0.3, 0.4, 0.2, 0.1]],  # nobody says image >= 0.5; text mean 0.1
        [[0.5, 0.0, 0.1, 0.4], [0.0, 0.0, 0.6, 0.4]],  # image fires, and text's mean 0.4 would too: first wins
        [[0.0, 0.1, 0.5, 0.4], [0.0, 0.1, 0.5, 0.4]],  # text mean 0.4 fires
    ])
    blended = members.mean(axis=1)
    rules = parse_rules({"rules": [{"label": "image-sarcasm", "when": "any", "min_prob": 0.5},
                                   {"label": "text-sarcasm", "when": "mean", "min_prob": 0.4}]}, LABELS).rules
    out, decided = apply_rules(members, blended, rules, LABELS)
    assert decided.tolist() == [0, -1, 0, 1]
    assert [LABELS[k] for k in out.argmax(axis=1)] == ["image-sarcasm", "multi-sarcasm", "image-sarcasm",
                                                      "text-sarcasm"]
    np.testing.assert_allclose(out[1], blended[1])  # untouched where no rule fires
    np.testing.assert_allclose(np.sort(out, axis=1), np.sort(blended, axis=1))  # a swap, still a distribution
    all_rule = Rule("image-sarcasm", "all", 0.5)
    assert all_rule.fires(members, LABELS).tolist() == [False, False, False, False]


def test_bad_rules_exit_2(tmp_path, oof_files):
    _, _, good, weak = oof_files
    (tmp_path / "r.yaml").write_text("rules:\n  - label: sarcasm\n    min_prob: 0.5\n")
    result = run_mmtune("ensemble", good, weak, "--method", "rules", "--rules", tmp_path / "r.yaml",
                        "--out", tmp_path / "e.csv")
    assert result.returncode == 2 and "rules[0]: label 'sarcasm'" in result.stderr and "Traceback" not in result.stderr


def test_misaligned_inputs_exit_2_naming_the_file(tmp_path, oof_files):
    targets, folds, good, _ = oof_files
    rng = np.random.default_rng(1)
    short = write_oof(tmp_path / "short.csv", member(targets[:-1], 1, rng), targets[:-1], folds[:-1])
    result = run_mmtune("ensemble", good, short, "--out", tmp_path / "e.csv")
    assert result.returncode == 2 and "short.csv" in result.stderr and "'299'" in result.stderr
    other_ids = write_oof(tmp_path / "ids.csv", member(targets, 1, rng), targets, folds,
                          ids=[f"x{i}" for i in range(300)])
    result = run_mmtune("ensemble", good, other_ids, "--out", tmp_path / "e.csv")
    assert result.returncode == 2 and "ids.csv: id 'x0' is not in" in result.stderr
    flipped = targets.copy()
    flipped[7] = (flipped[7] + 1) % 4
    gold = write_oof(tmp_path / "gold.csv", member(targets, 1, rng), flipped, folds)
    result = run_mmtune("ensemble", good, gold, "--method", "weighted", "--out", tmp_path / "e.csv")
    assert result.returncode == 2 and "gold.csv: gold label of id '7'" in result.stderr
    three = tmp_path / "three.csv"
    write_predictions(three, Predictions([str(i) for i in range(300)], np.full((300, 3), 1 / 3), LABELS[:3]))
    result = run_mmtune("ensemble", good, three, "--out", tmp_path / "e.csv")
    assert result.returncode == 2 and "three.csv" in result.stderr and "--label-map" in result.stderr


def test_label_order_is_aligned(tmp_path, oof_files):
    targets, folds, good, _ = oof_files
    probs = read_probs(good)
    order = [2, 0, 3, 1]
    reordered = write_oof(tmp_path / "re.csv", probs[::-1][:, order], targets[::-1], folds[::-1],
                          ids=[str(i) for i in range(299, -1, -1)], labels=[LABELS[k] for k in order])
    result = api.ensemble([good, reordered], out=tmp_path / "e.csv")
    np.testing.assert_allclose(read_probs(result.out), probs, atol=2e-6)  # the mean of a file with itself


def test_a_two_class_model_joins_through_a_label_map(tmp_path, oof_files):
    targets, folds, good, _ = oof_files
    rng = np.random.default_rng(2)
    sarcastic = (targets != 2).astype(int)
    two = member(sarcastic, 2.0, rng)[:, :2]
    two /= two.sum(axis=1, keepdims=True)
    binary = tmp_path / "binary.csv"
    write_predictions(binary, Predictions([str(i) for i in range(300)], two, ["not-sarcasm", "sarcasm"],
                                          gold=["sarcasm" if s else "not-sarcasm" for s in sarcastic],
                                          folds=list(folds)))
    mapping = tmp_path / "map.yaml"
    mapping.write_text("sarcasm: [image-sarcasm, multi-sarcasm, text-sarcasm]\n")
    result = api.ensemble([binary, good], out=tmp_path / "e.csv", method="stack", label_map=mapping)
    rows = read_csv(result.out)
    assert [row["gold"] for row in rows] == [LABELS[t] for t in targets]  # gold of the 4-class input
    assert result.summary["ensemble_oof_macro_f1"] > 0.5


def test_cli_ensemble_with_rules_scores_them_and_calibrates_test(tmp_path, oof_files):
    targets, folds, good, weak = oof_files
    tests = []
    for name in ("good", "weak"):
        rows = read_csv(tmp_path / f"{name}.csv")
        probs = np.array([[float(r[f"p_{label}"]) for label in LABELS] for r in rows])[::-1]
        tests.append(tmp_path / f"{name}-test.csv")
        write_predictions(tests[-1], Predictions([r["id"] for r in rows][::-1], probs, LABELS))
    (tmp_path / "r.yaml").write_text("base: weighted\nrules:\n  - {label: text-sarcasm, when: any, min_prob: 0.6}\n")
    result = run_mmtune("ensemble", good, weak, "--method", "rules", "--rules", tmp_path / "r.yaml", "--calibrate",
                        "--test", *tests, "--out", tmp_path / "ens.csv")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "ens.json").read_text())
    assert summary["rules"][0]["rule"] == "text-sarcasm when any member p >= 0.6"
    in_sample = summary["calibration"]["in_sample"]
    assert in_sample["macro_f1_after"] >= in_sample["macro_f1_before"]
    # The test rows are the OOF rows in reverse order: the fitted blend, calibration and rules give them the
    # output the saved blend gives the OOF rows.
    saved = read_saved_blend(tmp_path / "ens.json")
    fitted_oof = saved.fitted.apply(align([read_predictions(good), read_predictions(weak)], labels=LABELS))
    test = read_csv(tmp_path / "ens.csv")
    assert len(test) == 300
    for row in test:
        assert abs(float(row["p_text-sarcasm"]) - fitted_oof[int(row["id"]), 3]) < 2e-6
    # The OOF file holds the out-of-sample blend: each fold by a blend fitted on the other four.
    oof = read_csv(tmp_path / "ens.oof.csv")
    assert f1_score([r["gold"] for r in oof], [r["label"] for r in oof], average="macro") == pytest.approx(
        summary["ensemble_oof_macro_f1"])


def test_calibration_does_not_overturn_the_rules(tmp_path, oof_files):
    targets, folds, good, weak = oof_files
    (tmp_path / "r.yaml").write_text("base: mean\nrules:\n  - {label: text-sarcasm, when: any, min_prob: 0.3}\n")
    result = api.ensemble([good, weak], out=tmp_path / "ens.csv", method="rules", rules=tmp_path / "r.yaml",
                          calibrate="always", force_rules=True)
    fired = np.stack([read_probs(good), read_probs(weak)], axis=1)[:, :, LABELS.index("text-sarcasm")].max(1) >= 0.3
    assert fired.any() and result.summary["calibration"]["biases_applied"]
    labels = [row["label"] for row in read_csv(result.out)]
    assert all(label == "text-sarcasm" for label, hit in zip(labels, fired) if hit)


def test_fitting_without_gold_is_bad_input(tmp_path):
    path = tmp_path / "test.csv"
    write_predictions(path, Predictions(["1", "2"], np.full((2, 4), 0.25), LABELS))
    with pytest.raises(InputError, match="no gold column"):
        api.ensemble([path, path], out=tmp_path / "e.csv", method="stack")
    assert read_csv(api.ensemble([path, path], out=tmp_path / "m.csv").out)[0]["p_not-sarcasm"] == "0.250000"


def test_auto_calibration_keeps_the_biases_only_when_nested_cv_says_they_help(tmp_path):
    rng = np.random.default_rng(2)  # a draw whose biases fit the noise: held-out folds lose 0.02 macro-F1
    targets = rng.choice(4, size=200)
    noise = write_oof(tmp_path / "noise.csv", rng.dirichlet(np.ones(4), size=200), targets, np.arange(200) % 5)
    auto = api.ensemble([noise], out=tmp_path / "auto.csv", calibrate=True)
    assert auto.summary["calibration"]["nested_cv"]["gain"] < 0 and not auto.summary["calibration"]["biases_applied"]
    # Temperature alone never moves a decision.
    saved = read_saved_blend(tmp_path / "auto.json")
    decided = saved.fitted.apply(align([read_predictions(noise)])).argmax(axis=1)
    assert [LABELS[k] for k in decided] == [r["label"] for r in read_csv(noise)]
    forced = api.ensemble([noise], out=tmp_path / "forced.csv", calibrate="always")
    assert forced.summary["calibration"]["biases_applied"]
    in_sample = forced.summary["calibration"]["in_sample"]
    assert in_sample["macro_f1_after"] >= in_sample["macro_f1_before"]
