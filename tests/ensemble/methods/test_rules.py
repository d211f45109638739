"""`--method rules` blends with the method its rules file names as `base:`, and inherits what it declares."""

import numpy as np
import pytest

from mmtune import api
from mmtune.evaluation.predictions import Predictions, write_predictions
from tests.ensemble.methods.conftest import member

LABELS = ["image-sarcasm", "multi-sarcasm", "not-sarcasm", "text-sarcasm"]


@pytest.fixture
def oofs(tmp_path):
    rng = np.random.default_rng(0)
    targets = rng.choice(4, size=200)
    paths = []
    for i, strength in enumerate((2.0, 0.3)):
        paths.append(tmp_path / f"m{i}.csv")
        write_predictions(paths[-1], Predictions([str(j) for j in range(200)], member(targets, strength, rng), LABELS,
                                                 gold=[LABELS[t] for t in targets], folds=list(np.arange(200) % 5)))
    return paths


@pytest.mark.parametrize("base", ["mean", "weighted", "greedy", "rank"])
def test_rules_blend_with_their_base(tmp_path, oofs, base):
    rules = tmp_path / "r.yaml"
    rules.write_text(f"base: {base}\nrules:\n  - {{label: text-sarcasm, when: any, min_prob: 0.99}}\n")
    with_rules = api.ensemble(oofs, out=tmp_path / "r.csv", method="rules", rules=rules).summary
    plain = api.ensemble(oofs, out=tmp_path / "p.csv", method=base).summary
    assert with_rules["rules"][0]["fires"] == 0  # nothing fires: the rules method is its base
    assert with_rules["ensemble_oof_macro_f1"] == plain["ensemble_oof_macro_f1"]
    assert with_rules["ensemble_oof_scored"] == plain["ensemble_oof_scored"]
    assert with_rules.get("weights") == plain.get("weights")
