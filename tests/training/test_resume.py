"""Which config changes a run survives: values the config leaves to the run match what the run chose."""

from mmtune.config import load_config
from mmtune.training.resume import config_changes, left_to_the_run


def _config(*overrides: str):
    return load_config(None, list(overrides))


def test_values_left_to_the_run_match_what_it_chose():
    resolved = _config("data.labels=[a,b]", "train.batch_size=8", "train.grad_accum=2")
    assert left_to_the_run({"data.labels": None, "train.batch_size": 0}) == {
        "data.labels", "train.batch_size", "train.grad_accum"}
    assert config_changes(resolved, _config("train.batch_size=0")) == []


def test_given_values_are_compared_and_resumable_keys_are_not():
    saved = _config("data.labels=[a,b]", "train.batch_size=8")
    assert config_changes(saved, _config("data.labels=[a,b]", "train.batch_size=8", "train.epochs=9",
                                         "cv.only=[1]")) == []
    assert config_changes(saved, _config("data.labels=[b,a]", "train.batch_size=4")) == [
        "data.labels: ['a', 'b'] -> ['b', 'a']", "train.batch_size: 8 -> 4"]
