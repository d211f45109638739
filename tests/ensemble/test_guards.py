"""Ensembles that cannot hurt silently: each guard on small synthetic OOF files whose right answer is known."""

import io
import json

import numpy as np
import pytest
from rich.console import Console

from mmtune import api
from mmtune.cli.tables import ensemble_table
from mmtune.ensemble.inputs import align, gold_priors, map_labels
from mmtune.ensemble.methods.weighted import LogLossWeightsBlender
from mmtune.ensemble.saved import read_saved_blend
from mmtune.evaluation.calibration import macro_f1
from mmtune.evaluation.predictions import Predictions, read_predictions, write_predictions
from tests.ensemble.test_ensemble import LABELS, member, read_csv, read_probs, write_oof
from tests.hostile.conftest import assert_one_line_error
from tests.training.conftest import run_mmtune

N = 300


@pytest.fixture
def good_and_noise(tmp_path):
    """A good input and one that is noise: any blend of the two is worse than the good one alone."""
    rng = np.random.default_rng(0)
    targets = rng.choice(4, size=N, p=[0.2, 0.35, 0.4, 0.05])
    folds = np.arange(N) % 5
    good = write_oof(tmp_path / "good.csv", member(targets, 2.5, rng), targets, folds)
    noise = write_oof(tmp_path / "noise.csv", rng.dirichlet(np.ones(4) * 0.3, size=N), targets, folds)
    return targets, folds, good, noise


def test_a_blend_below_its_best_input_warns_and_names_it(tmp_path, good_and_noise):
    targets, _, good, noise = good_and_noise
    result = run_mmtune("ensemble", good, noise, "--out", tmp_path / "e.csv")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "e.json").read_text())
    best, blend = summary["members_oof_macro_f1"][0], summary["ensemble_oof_macro_f1"]
    assert blend < best and best == pytest.approx(macro_f1(read_probs(good), targets))
    warning = " ".join(line for line in result.stderr.splitlines() if "WARNING" in line)
    assert f"input 1 ({good}) alone at {best:.3f}" in " ".join(warning.split())
    assert "--method auto" in warning and f"{blend:.3f}" in warning
    # The table puts every input's OOF macro-F1 beside the ensemble's.
    out = " ".join(result.stdout.split())
    assert f"{best:.3f}" in out and f"{summary['members_oof_macro_f1'][1]:.3f}" in out and f"{blend:.3f}" in out


def test_no_warning_when_the_blend_beats_every_input(tmp_path):
    rng = np.random.default_rng(1)
    targets = rng.choice(4, size=400)
    paths = [write_oof(tmp_path / f"m{i}.csv", member(targets, 1.0, rng), targets, np.arange(400) % 5)
             for i in range(3)]
    summary = api.ensemble(paths, out=tmp_path / "e.csv").summary
    assert summary["ensemble_oof_macro_f1"] > max(summary["members_oof_macro_f1"]) and summary["warnings"] == []


def test_auto_is_never_below_the_best_input_and_predict_reproduces_it(tmp_path, good_and_noise):
    targets, folds, good, noise = good_and_noise
    tests = []
    for path in (good, noise):  # test rows: the OOF rows again, in reverse order
        pred = read_predictions(path)
        tests.append(tmp_path / f"test-{path.name}")
        write_predictions(tests[-1], Predictions(pred.ids[::-1], pred.probs[::-1], LABELS))
    result = api.ensemble([good, noise], out=tmp_path / "auto.csv", method="auto", tests=tests)
    auto = result.summary["auto"]
    assert auto["choice"] == max(auto["nested_cv_macro_f1"], key=auto["nested_cv_macro_f1"].get)
    assert auto["nested_cv_macro_f1"][auto["choice"]] >= auto["nested_cv_macro_f1"]["best"]
    test_probs = read_probs(result.out)[::-1]
    assert macro_f1(test_probs, targets) >= macro_f1(read_probs(good), targets) - 0.01
    saved = read_saved_blend(tmp_path / "auto.json")
    assert saved.fitted.method == "auto" and saved.fitted.blender.choice_ == auto["choice"]
    again = saved.fitted.apply(align([read_predictions(p) for p in tests], labels=LABELS))
    np.testing.assert_allclose(again, read_probs(result.out), atol=2e-6)


def test_a_rule_that_lowers_oof_macro_f1_is_not_applied_unless_forced(tmp_path, good_and_noise):
    _, _, good, noise = good_and_noise
    # The noise input gives text-sarcasm >= 0.5 to posts of every class: the rule takes them all.
    rules = tmp_path / "r.yaml"
    rules.write_text("base: mean\nrules:\n  - {label: text-sarcasm, when: any, min_prob: 0.5}\n")
    plain = api.ensemble([good, noise], out=tmp_path / "plain.csv")
    result = run_mmtune("ensemble", good, noise, "--method", "rules", "--rules", rules, "--out", tmp_path / "r.csv")
    assert result.returncode == 0, result.stderr
    rule = json.loads((tmp_path / "r.json").read_text())["rules"][0]
    assert rule["changed"] > 0 and rule["macro_f1_after"] < rule["macro_f1_before"] and not rule["applied"]
    assert [r["label"] for r in read_csv(tmp_path / "r.csv")] == [r["label"] for r in read_csv(plain.out)]
    assert "not applied (--force-rules applies it)" in result.stderr and "WARNING" in result.stderr
    assert "NOT applied" in result.stdout
    assert read_saved_blend(tmp_path / "r.json").fitted.rules.rules == ()
    forced = api.ensemble([good, noise], out=tmp_path / "f.csv", method="rules", rules=rules, force_rules=True)
    assert forced.summary["rules"][0]["applied"]
    assert forced.summary["ensemble_oof_macro_f1"] == pytest.approx(rule["macro_f1_after"])
    assert "applied anyway (--force-rules)" in " ".join(forced.summary["warnings"])


def test_a_rule_that_fires_without_changing_a_decision_says_why(tmp_path, good_and_noise):
    _, _, good, noise = good_and_noise
    rules = tmp_path / "r.yaml"  # where the good input gives >= 0.5, the blend (it alone) already says so
    rules.write_text("base: best\nrules:\n  - {label: not-sarcasm, when: all, min_prob: 0.5}\n")
    result = run_mmtune("ensemble", good, noise, "--method", "rules", "--rules", rules, "--out", tmp_path / "r.csv")
    assert result.returncode == 0, result.stderr
    rule = json.loads((tmp_path / "r.json").read_text())["rules"][0]
    assert rule["fires"] > 0 and rule["changed"] == 0 and rule["applied"]
    assert rule["macro_f1_after"] == rule["macro_f1_before"]
    out = " ".join(result.stdout.split())
    assert f"fires {rule['fires']}, right {rule['correct']}, changed 0 ({rule['fires']} already had its label)" in out


@pytest.mark.parametrize("method", ["stack", "greedy", "weighted", "auto"])
def test_inputs_cross_validated_on_different_folds_are_refused(tmp_path, good_and_noise, method):
    targets, folds, good, _ = good_and_noise
    rng = np.random.default_rng(3)
    other = write_oof(tmp_path / "other-folds.csv", member(targets, 2.0, rng), targets, rng.permutation(folds))
    result = run_mmtune("ensemble", good, other, "--method", method, "--out", tmp_path / "e.csv")
    assert_one_line_error(result, "good.csv", "other-folds.csv", "different folds")
    assert not (tmp_path / "e.csv").exists()
    # The same split numbered otherwise is the same split; a plain mean fits nothing on the folds.
    renumbered = write_oof(tmp_path / "renumbered.csv", member(targets, 2.0, rng), targets, (folds + 2) % 5)
    assert api.ensemble([good, renumbered], out=tmp_path / "ok.csv", method=method).summary["method"] == method
    assert api.ensemble([good, other], out=tmp_path / "mean.csv").summary["method"] == "mean"


def binary_and_four(tmp_path):
    """A 4-class input and a better-calibrated 2-class one (sarcasm or not) that cannot tell the sarcasm labels
    apart (seed 1: log-loss weights gave the binary 0.75 and the blend 0.485 against the 4-class 0.606)."""
    rng = np.random.default_rng(1)
    targets = rng.choice(4, size=400, p=[0.2, 0.35, 0.4, 0.05])
    folds = np.arange(400) % 5
    four = member(targets, 1.5, rng)
    sarcastic = (targets != 2).astype(int)
    two = member(sarcastic, 3.0, rng)[:, :2]
    two /= two.sum(axis=1, keepdims=True)
    gold = ["sarcasm" if s else "not-sarcasm" for s in sarcastic]
    binary = tmp_path / "binary.csv"
    write_predictions(binary, Predictions([str(i) for i in range(400)], two, ["not-sarcasm", "sarcasm"], gold=gold,
                                          folds=list(folds)))
    (tmp_path / "map.yaml").write_text("sarcasm: [image-sarcasm, multi-sarcasm, text-sarcasm]\n")
    return targets, write_oof(tmp_path / "four.csv", four, targets, folds), binary, tmp_path / "map.yaml"


def test_weighted_with_a_label_map_does_not_hand_the_decisions_to_a_model_that_cannot_make_them(tmp_path):
    targets, four, binary, mapping = binary_and_four(tmp_path)
    four_f1 = macro_f1(read_probs(four), targets)
    # The symptom: the binary's sarcastic mass split by the priors, then log-loss weights.
    spread = map_labels(read_predictions(binary), LABELS, {"sarcasm": LABELS[:2] + LABELS[3:]},
                        gold_priors([LABELS[t] for t in targets], LABELS))
    X = np.stack([read_probs(four), spread.probs], axis=1)
    old = LogLossWeightsBlender().fit(X, targets)
    assert old.weights_[1] > 0.7 and macro_f1(old.predict_proba(X), targets) < four_f1 - 0.1
    # Now the binary moves mass between sarcastic and not only; inside the group the 4-class input decides.
    result = run_mmtune("ensemble", four, binary, "--method", "weighted", "--label-map", mapping,
                        "--out", tmp_path / "w.csv")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "w.json").read_text())
    assert summary["ensemble_oof_macro_f1"] > four_f1 + 0.05 and summary["warnings"] == []
    assert summary["label_mapped_inputs"] == [1]
    wide = Console(width=400, record=True, file=io.StringIO())
    wide.print(ensemble_table(summary))
    assert "binary.csv (label map: its weight acts between its label groups, not inside one)" in wide.export_text()
    blended = read_probs(tmp_path / "w.csv")
    sarcasm = [0, 1, 3]
    within = blended[:, sarcasm] / blended[:, sarcasm].sum(axis=1, keepdims=True)
    four_within = read_probs(four)[:, sarcasm] / read_probs(four)[:, sarcasm].sum(axis=1, keepdims=True)
    np.testing.assert_allclose(within, four_within, atol=1e-3)  # both read back with six decimals


@pytest.mark.parametrize("calibrate", [None, "always"])
def test_out_of_sample_means_nested_cv_with_and_without_calibration(tmp_path, good_and_noise, calibrate):
    targets, _, good, noise = good_and_noise
    result = run_mmtune("ensemble", good, noise, "--method", "stack", *(["--calibrate", calibrate] if calibrate
                                                                         else []), "--out", tmp_path / "e.csv")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "e.json").read_text())
    assert summary["ensemble_oof_scored"] == "nested CV over the OOF file's 5 folds"
    oof = read_probs(tmp_path / "e.csv")  # no test files: --out holds the OOF rows' out-of-sample blend
    assert macro_f1(oof, targets) == pytest.approx(summary["ensemble_oof_macro_f1"], abs=1e-6)
    assert "in-sample" not in result.stdout and "nested CV" in result.stdout
    if calibrate:
        assert summary["calibration"]["in_sample"]["macro_f1_after"] >= summary["calibration"]["in_sample"][
            "macro_f1_before"]
    # The in-sample score of the same stack is higher: what nested CV keeps out of the report.
    saved = read_saved_blend(tmp_path / "e.json")
    in_sample = saved.fitted.apply(align([read_predictions(good), read_predictions(noise)]))
    assert macro_f1(in_sample, targets) > summary["ensemble_oof_macro_f1"]


def test_rules_only_with_method_rules(tmp_path, good_and_noise):
    _, _, good, noise = good_and_noise
    (tmp_path / "r.yaml").write_text("rules:\n  - {label: text-sarcasm, min_prob: 0.5}\n")
    result = run_mmtune("ensemble", good, noise, "--rules", tmp_path / "r.yaml", "--out", tmp_path / "e.csv")
    assert_one_line_error(result, "--rules is for --method rules")
