"""The blend an ensemble saves in its JSON, rebuilt: the same test output from the test files, label map and
priors included (no models here: the members' test files stand for what their models predict)."""

from __future__ import annotations

import numpy as np
import pytest

from mmtune.ensemble.inputs import align
from mmtune.ensemble.saved import model_sources, read_saved_blend
from mmtune.errors import InputError
from mmtune.evaluation.predictions import Predictions, read_predictions, write_predictions
from mmtune.recipes.ensemble import EnsembleRequest, run_ensemble
from tests.ensemble.test_ensemble import LABELS, member

BINARY = ["not-sarcasm", "sarcasm"]


def write_member(path, probs, labels, gold=None, folds=None):
    ids = [str(i) for i in range(len(probs))]
    write_predictions(path, Predictions(ids, probs, labels, gold=gold, folds=folds))
    return path


def two_class(targets, rng):
    sarcastic = (targets != 2).astype(int)
    probs = member(sarcastic, 2.0, rng)[:, :2]
    return probs / probs.sum(axis=1, keepdims=True), ["sarcasm" if s else "not-sarcasm" for s in sarcastic]


RULES = "base: greedy\nrules:\n  - {label: text-sarcasm, when: any, min_prob: 0.3}\n"


@pytest.mark.parametrize(("method", "rules"), [("stack", None), ("rules", RULES)])
def test_the_saved_blend_gives_the_test_output_again_through_a_label_map(tmp_path, method, rules):
    rng = np.random.default_rng(3)
    targets = rng.choice(4, size=240, p=[0.2, 0.35, 0.4, 0.05])
    folds = list(np.arange(240) % 4)
    binary_oof, binary_gold = two_class(targets, rng)
    oofs = [write_member(tmp_path / "binary-oof.csv", binary_oof, BINARY, binary_gold, folds),
            write_member(tmp_path / "four-oof.csv", member(targets, 2.0, rng), LABELS, [LABELS[t] for t in targets],
                         folds)]
    test_targets = rng.choice(4, size=60)
    tests = [write_member(tmp_path / "binary-test.csv", two_class(test_targets, rng)[0], BINARY),
             write_member(tmp_path / "four-test.csv", member(test_targets, 2.0, rng), LABELS)]
    (tmp_path / "map.yaml").write_text("sarcasm: [image-sarcasm, multi-sarcasm, text-sarcasm]\n")
    (tmp_path / "rules.yaml").write_text(rules or "")
    out = tmp_path / "ens.csv"
    run_ensemble(EnsembleRequest(oofs, out, method=method, tests=tests, label_map=tmp_path / "map.yaml",
                                 rules=tmp_path / "rules.yaml" if rules else None, calibrate="always"))

    saved = read_saved_blend(tmp_path / "ens.json")
    members = align([read_predictions(path) for path in tests], saved.label_map, labels=saved.labels,
                    priors=saved.priors)
    write_member(tmp_path / "again.csv", saved.fitted.apply(members), saved.labels)
    assert (tmp_path / "again.csv").read_bytes() == out.read_bytes()
    assert saved.label_map == {"sarcasm": ["image-sarcasm", "multi-sarcasm", "text-sarcasm"]}
    assert saved.train_labels == {label: int((targets == k).sum()) for k, label in enumerate(LABELS)}
    # Plain files: nothing to re-run on a new file.
    assert [s.kind for s in saved.sources] == ["file", "file"]
    with pytest.raises(InputError, match="input 1 .*binary-oof.csv. was a prediction file"):
        model_sources(saved)
