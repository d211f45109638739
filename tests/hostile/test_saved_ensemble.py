"""A saved ensemble (`ens.json`, read by `mmtune predict ens.json FILE`) that was edited, damaged or made by
someone else: nothing in it runs, and every fault is one exit-2 line naming the file and the key."""

from __future__ import annotations

import copy
import json
import re

import pytest

from mmtune.ensemble.saved import read_saved_blend
from mmtune.errors import InputError
from tests.hostile.conftest import assert_one_line_error, run_mmtune

LABELS = ["image-sarcasm", "multi-sarcasm", "not-sarcasm", "text-sarcasm"]
VALID = {"method": "stack", "labels": LABELS, "version": 1,
         "inputs": [{"kind": "cv", "path": "cv-a"}, {"kind": "run", "path": "/abs/run"}],
         "label_map": {}, "priors": [0.1, 0.3, 0.5, 0.1],
         "state": {"classes": [0, 1, 2, 3], "coef": [[0.5] * 8] * 4, "intercept": [0.0] * 4},
         "calibration": {"temperature": 1.5, "biases": [0.0, 0.5, 0.0, 1.0]}, "rules": None,
         "train_labels": {"not-sarcasm": 5, "text-sarcasm": 1}}


def saved(tmp_path, blend=VALID, **changes):
    blend = copy.deepcopy(blend) | changes
    path = tmp_path / "ens.json"
    path.write_text(json.dumps({"method": "stack", "blend": blend}))
    return path


def test_a_valid_blend_is_rebuilt(tmp_path):
    blend = read_saved_blend(saved(tmp_path))
    assert blend.labels == LABELS and blend.fitted.calibrator.temperature_ == 1.5
    assert [(s.kind, str(s.path)) for s in blend.sources] == [("cv", str(tmp_path / "cv-a")), ("run", "/abs/run")]


@pytest.mark.parametrize(("changes", "fragment"), [
    ({"version": 2}, "key 'blend.version' must be 1"),
    ({"method": "pickle"}, "key 'blend.method' must be one of"),
    ({"labels": ["a"]}, "key 'blend.labels' must be a list of 2 or more different label names"),
    ({"labels": ["a", "a", "b", "c"]}, "key 'blend.labels'"),
    ({"inputs": []}, "key 'blend.inputs' must be a non-empty list"),
    ({"inputs": [{"kind": "model", "path": "x"}, {"kind": "cv", "path": "y"}]}, "key 'blend.inputs[0].kind'"),
    ({"inputs": [{"kind": "cv", "path": 3}, {"kind": "cv", "path": "y"}]}, "key 'blend.inputs[0].path' must be a path"),
    ({"inputs": [{"kind": "cv"}, {"kind": "cv", "path": "y"}]}, "key 'blend.inputs[0].path' is missing"),
    ({"state": {"classes": [0, 1, 2, 3], "coef": [[0.5] * 8] * 3, "intercept": [0.0] * 4}},
     "key 'blend.state.coef' must be a list of 4 lists, each a list of 8 finite"),
    ({"state": {"classes": [0, 1, 2, 3], "coef": [[0.5] * 8] * 4, "intercept": [0.0] * 4,
                "__reduce__": "os.system"}}, None),  # an unknown state key is never looked at, let alone run
    ({"state": {"classes": [3, 1], "coef": [[0.5] * 8], "intercept": [0.0]}}, "key 'blend.state.classes'"),
    ({"state": "gASV"}, "key 'blend.state' must be an object"),
    ({"calibration": {"temperature": -1, "biases": [0, 0, 0, 0]}}, "key 'blend.calibration.temperature'"),
    ({"calibration": {"temperature": "1", "biases": [0, 0, 0, 0]}}, "key 'blend.calibration.temperature'"),
    ({"calibration": {"temperature": 1, "biases": [0, 0, 0]}}, "key 'blend.calibration.biases' must be a list of 4"),
    ({"calibration": {"temperature": 1, "biases": [0, 0, True, 0]}}, "key 'blend.calibration.biases'"),
    ({"rules": {"base": "mean", "rules": [{"label": "text-sarcasm", "min_prob": 0.5}]}}, "key 'blend.rules' must be"),
    ({"method": "rules", "state": {"weights": [1, 1]},
      "rules": {"base": "mean", "rules": [{"label": "bogus", "min_prob": 0.5}]}}, "label 'bogus' is not one of"),
    ({"label_map": {"sarcasm": ["nope"]}}, "key 'blend.label_map.sarcasm'"),
    ({"priors": [0.5, -0.1, 0.3, 0.3]}, "key 'blend.priors'"),
    ({"train_labels": {"not-sarcasm": 2.5}}, "key 'blend.train_labels.not-sarcasm'"),
    ({"train_labels": {"bogus": 2}}, "key 'blend.train_labels.bogus'"),
    ({"extra": 1}, "key 'blend.extra' is not a key of a saved blend"),
])
def test_each_bad_entry_is_named_by_its_key(tmp_path, changes, fragment):
    path = saved(tmp_path, **changes)
    if fragment is None:
        read_saved_blend(path)
        return
    with pytest.raises(InputError) as caught:
        read_saved_blend(path)
    assert str(caught.value).startswith(f"{path}: ") and fragment in str(caught.value)


def test_a_missing_key_is_named(tmp_path):
    blend = {k: v for k, v in VALID.items() if k != "calibration"}
    with pytest.raises(InputError, match=r"key 'blend.calibration' is missing"):
        read_saved_blend(saved(tmp_path, blend))


@pytest.mark.parametrize(("text", "fragment"), [
    ("{", "invalid JSON at line 1"),
    ('{"blend": 1, "blend": 2}', "key 'blend' appears twice"),
    ('{"summary": 1}', "not an ensemble saved by mmtune ensemble (no 'blend' key)"),
    ("[" * 100000, "nested too deeply"),
    ('{"blend": "\\ud83d"}', "not valid Unicode"),
])
def test_a_damaged_file_is_one_line_from_the_cli(tmp_path, text, fragment):
    path = tmp_path / "ens.json"
    path.write_text(text)
    data = tmp_path / "test.json"
    data.write_text("{}")
    assert_one_line_error(run_mmtune("predict", path, data, "--out", tmp_path / "p.csv"), str(path), fragment)


def test_nan_weights_and_a_binary_file_from_the_cli(tmp_path):
    data = tmp_path / "test.json"
    data.write_text("{}")
    path = tmp_path / "ens.json"
    path.write_text(json.dumps({"blend": VALID | {"method": "mean", "state": {"weights": [1.0, 2.0]}}})
                    .replace("2.0", "NaN"))
    assert_one_line_error(run_mmtune("predict", path, data, "--out", tmp_path / "p.csv"),
                          "key 'blend.state.weights' must be a list of 2 finite numbers")
    path.write_bytes(b"\x80\x04\x95pickle")
    assert_one_line_error(run_mmtune("predict", path, data, "--out", tmp_path / "p.csv"), "not UTF-8")


def test_an_input_folder_that_is_gone_or_changed_kind_is_named(tmp_path):
    data = tmp_path / "test.json"
    data.write_text("{}")
    path = saved(tmp_path)  # inputs: cv-a (relative to the JSON) and /abs/run
    assert_one_line_error(run_mmtune("predict", path, data, "--out", tmp_path / "p.csv"),
                          f"input 1 ({tmp_path / 'cv-a'}) was a cv folder", "is not there now")
    (tmp_path / "cv-a").mkdir()
    (tmp_path / "cv-a" / "config.yaml").write_text("name: x\n")
    assert_one_line_error(run_mmtune("predict", path, data, "--out", tmp_path / "p.csv"),
                          "input 1", "is a run folder now")


@pytest.mark.parametrize(("blend", "fragment"), [
    (VALID | {"version": True}, "key 'blend.version' must be 1"),
    ([1, 2], "key 'blend' must be an object, got a list"),
])
def test_look_alikes_of_the_right_type(tmp_path, blend, fragment):
    path = tmp_path / "ens.json"
    path.write_text(json.dumps({"blend": blend}))
    with pytest.raises(InputError, match=re.escape(fragment)):
        read_saved_blend(path)
