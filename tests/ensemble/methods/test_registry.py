"""The registry: every module in ensemble/methods/ is a method; what each declares; the contract every blender keeps."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone

import mmtune.ensemble.methods as methods
from mmtune.ensemble.methods import get_method, known_methods, rules_bases
from mmtune.ensemble.rules import parse_rules
from mmtune.errors import InputError
from tests.training.conftest import run_mmtune

LABELS = ["image-sarcasm", "multi-sarcasm", "not-sarcasm", "text-sarcasm"]
BLENDERS = [name for name in known_methods() if not get_method(name).needs_rules]


def test_every_module_is_a_method_named_after_it():
    modules = sorted(p.stem for p in Path(methods.__file__).parent.glob("*.py") if not p.stem.startswith("_"))
    assert known_methods() == modules
    assert {"mean", "weighted", "rank", "stack", "rules", "greedy", "best", "auto"} <= set(modules)
    with pytest.raises(KeyError):
        get_method("bogus")


@pytest.mark.parametrize(("name", "needs_gold", "fitted_on_gold", "rules_base", "needs_rules"), [
    ("mean", False, False, True, False),
    ("weighted", True, True, True, False),
    ("greedy", True, True, True, False),
    ("rank", False, False, True, False),  # its quantile grids read the OOF probabilities, never the gold labels
    ("stack", True, True, False, False),
    ("best", True, True, True, False),
    ("auto", True, True, False, False),
    ("rules", True, False, False, True),  # needs gold to judge the rules; fitted on gold is its base's
])
def test_what_the_methods_declare(name, needs_gold, fitted_on_gold, rules_base, needs_rules):
    method = get_method(name)
    assert (method.needs_gold, method.fitted_on_gold, method.rules_base, method.needs_rules) == (
        needs_gold, fitted_on_gold, rules_base, needs_rules)


@pytest.mark.parametrize("name", BLENDERS)
def test_every_blender_keeps_the_estimator_contract(name, good_and_weak):
    X, targets, folds = good_and_weak
    method = get_method(name)
    blender = method.build(0)
    unfitted = set(vars(blender))
    assert clone(blender).get_params() == blender.get_params()
    assert method.fit(blender, X, targets, folds) is blender
    oof = blender.predict_proba(X)
    assert all(attr.endswith("_") for attr in set(vars(blender)) - unfitted)
    assert oof.shape == (300, 4)
    np.testing.assert_allclose(oof.sum(axis=1), 1.0)
    np.testing.assert_allclose(blender.predict_proba(X[:7]).sum(axis=1), 1.0)


def fitted(name, good_and_weak):
    """The method `name` and its blender fitted on the good and weak members."""
    X, targets, folds = good_and_weak
    method = get_method(name)
    blender = method.build(0)
    method.fit(blender, X, targets, folds)
    return method, blender


@pytest.mark.parametrize("name", BLENDERS)
def test_the_summary_reports_what_a_method_says_it_fitted(name, good_and_weak):
    method, blender = fitted(name, good_and_weak)
    reported = method.fitted(blender)
    if name in ("mean", "weighted", "greedy", "best"):
        assert set(reported) == {"weights"} and np.isclose(sum(reported["weights"]), 1.0)
    elif name == "auto":
        assert reported["auto"]["choice"] in reported["auto"]["nested_cv_macro_f1"]
    else:
        assert reported == {}


def test_rules_bases_are_the_methods_that_say_so():
    assert {"greedy", "mean", "rank", "weighted", "best"} <= set(rules_bases())
    assert not {"stack", "rules", "auto"} & set(rules_bases())
    known = re.escape(str(rules_bases()))
    with pytest.raises(InputError, match=rf"'base' must be one of {known}, got 'stack'"):
        parse_rules({"base": "stack", "rules": [{"label": "text-sarcasm", "min_prob": 0.5}]}, LABELS)


def test_the_cli_lists_the_methods_and_names_them_on_a_bad_one(tmp_path):
    help_text = run_mmtune("ensemble", "--help").stdout
    assert " | ".join(known_methods()) in " ".join(help_text.split())
    result = run_mmtune("ensemble", tmp_path / "a.csv", "--method", "bogus", "--out", tmp_path / "e.csv")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"mmtune: error: --method must be one of {known_methods()}, got 'bogus'")


@pytest.mark.parametrize("name", BLENDERS)
def test_every_blender_is_saved_as_json_numbers_and_rebuilt_to_predict_the_same(name, good_and_weak):
    method, blender = fitted(name, good_and_weak)
    state = json.loads(json.dumps(method.save(blender)))  # only what JSON holds survives
    rebuilt = method.load(state, 2, 4)
    new_rows = np.random.default_rng(1).dirichlet(np.ones(4), size=(50, 2))
    assert np.array_equal(rebuilt.predict_proba(new_rows), blender.predict_proba(new_rows))


@pytest.mark.parametrize(("name", "state", "key"), [
    ("mean", {"weights": [0.5]}, "weights"),  # one weight for two members
    ("weighted", {"weights": [0.5, "0.5"]}, "weights"),
    ("greedy", {"weights": [0.0, 0.0]}, "weights"),
    ("greedy", {"weights": [True, 1.0]}, "weights"),
    ("stack", {"classes": [0, 1, 2, 3], "coef": [[0.0] * 8] * 3, "intercept": [0.0] * 4}, "coef"),
    ("stack", {"classes": [0, 1, 2, 9], "coef": [[0.0] * 8] * 4, "intercept": [0.0] * 4}, "classes"),
    ("stack", {"classes": [0, 1, 2, 3], "coef": [[0.0] * 8] * 4, "intercept": [[0.0]] * 4}, "intercept"),
    ("rank", {"quantiles": [[[0.5] * 101] * 4] * 2 + [[[0.5] * 101] * 4]}, "quantiles"),  # three members
    ("rank", {"quantiles": [[list(np.linspace(1, 0, 101))] * 4] * 2}, "quantiles"),  # decreasing
    ("auto", {"choice": "rank", "state": {}}, "choice"),
    ("auto", {"choice": "weighted", "state": {"weights": [1.0]}}, "state.weights"),
])
def test_a_saved_state_that_save_cannot_write_is_refused_naming_its_key(name, state, key):
    with pytest.raises(methods.StateError) as caught:
        get_method(name).load(state, 2, 4)
    assert caught.value.key == key
