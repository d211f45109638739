"""cv.pseudo_label: confident test posts, labelled by the first-round model of the same fold, join that fold's
training posts in a second round; never its validation posts, nor near-copies of them; counted per class."""

import csv
import json
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mmtune.config import PseudoLabelConfig, load_config
from mmtune.data.checks import load_posts
from mmtune.data.folds import read_folds
from mmtune.data.post import Post
from mmtune.errors import InputError
from mmtune.evaluation.predictions import Predictions, read_predictions
from mmtune.recipes.cv import run_cv
from mmtune.training.pseudo_labels import content_keys, select
from tests.hostile.conftest import assert_one_line_error, run_mmtune
from tests.training.conftest import fusion_config, write_config

LABELS = ["a", "b", "c"]


def post(pid, text, label=None):
    return Post(id=pid, images=(), text=text, label=label)


def predictions(rows):
    """{id: probabilities} -> Predictions over LABELS."""
    return Predictions(list(rows), np.array(list(rows.values()), dtype=float), LABELS)


TEST = [post(f"t{i}", f"test caption number {i}") for i in range(6)]
PROBS = {"t0": [0.99, 0.005, 0.005], "t1": [0.01, 0.97, 0.02], "t2": [0.02, 0.02, 0.96],
         "t3": [0.90, 0.05, 0.05], "t4": [0.5, 0.3, 0.2], "t5": [0.951, 0.049, 0.0]}


def test_the_threshold_keeps_only_confident_posts_labelled_with_their_top_class():
    chosen = select(predictions(PROBS), TEST, validation=[], training_posts=100,
                    settings=PseudoLabelConfig(threshold=0.95, max_fraction=0.3), group_by=["caption", "image"])
    assert [(p.id, p.label) for p in chosen.posts] == [("t0", "a"), ("t1", "b"), ("t2", "c"), ("t5", "a")]
    assert chosen.confidence == sorted(chosen.confidence, reverse=True)  # most confident first
    assert chosen.per_class() == {"a": 2, "b": 1, "c": 1}
    assert (chosen.confident, chosen.cap, chosen.near_copies) == (4, 30, 0)
    assert all(p.text == t.text for p in chosen.posts for t in TEST if t.id == p.id)  # the test posts themselves


def test_max_fraction_caps_the_count_at_a_fraction_of_the_folds_training_posts():
    chosen = select(predictions(PROBS), TEST, validation=[], training_posts=10,
                    settings=PseudoLabelConfig(threshold=0.5, max_fraction=0.2), group_by=["caption"])
    assert chosen.cap == 2 and chosen.confident == 6
    assert [p.id for p in chosen.posts] == ["t0", "t1"]  # the two most confident


def test_a_near_copy_of_a_validation_post_is_never_taken_however_confident():
    validation = [post("v1", "Test caption   number 0!", "a"), post("v2", "unrelated", "b")]
    chosen = select(predictions(PROBS), TEST, validation, training_posts=100,
                    settings=PseudoLabelConfig(threshold=0.5, max_fraction=1.0), group_by=["caption", "image"])
    assert "t0" not in [p.id for p in chosen.posts] and chosen.near_copies == 1
    # With captions not grouped (cv.group_by: [image]) the same post is no near-copy.
    alone = select(predictions(PROBS), TEST, validation, training_posts=100,
                   settings=PseudoLabelConfig(threshold=0.5, max_fraction=1.0), group_by=["image"])
    assert "t0" in [p.id for p in alone.posts]


def test_predictions_of_other_posts_than_the_test_file_are_refused():
    with pytest.raises(InputError, match="not the posts of data.test"):
        select(predictions({"t0": PROBS["t0"], "zz": PROBS["t1"]}), TEST[:2], [], 10,
               PseudoLabelConfig(), ["caption"])


@pytest.mark.parametrize("override, key", [
    ("cv.pseudo_label.threshold=0", "cv.pseudo_label.threshold"),
    ("cv.pseudo_label.max_fraction=1.5", "cv.pseudo_label.max_fraction"),
    ("cv.pseudo_label=yes", "cv.pseudo_label"),
    ("cv.pseudo_label.treshold=0.9", "cv.pseudo_label.treshold"),
])
def test_bad_settings_are_refused_naming_the_key(override, key):
    with pytest.raises(InputError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def test_the_command_exits_2_naming_the_key(tmp_path):
    result = run_mmtune("cv", "configs/demo.yaml", "cv.pseudo_label.max_fraction=-1", f"output_dir={tmp_path / 'x'}")
    assert_one_line_error(result, "'cv.pseudo_label.max_fraction' must be in (0, 1]")
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------------------------------ a whole cv, twice round


def read_rows(path):
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def data_with_copies(demo_small, tmp_path):
    """The demo's test file plus copies (new ids, same caption and image) of the first 8 training posts."""
    images = tmp_path / "test-images"
    shutil.copytree(demo_small.test_images, images)
    train = json.loads(demo_small.train.read_text(encoding="utf-8"))
    test = json.loads(demo_small.test.read_text(encoding="utf-8"))
    for pid in list(train)[:8]:
        shutil.copy(demo_small.train_images / train[pid]["image"], images / train[pid]["image"])
        test[f"copy-{pid}"] = {**train[pid], "label": None}
    (tmp_path / "test.json").write_text(json.dumps(test, ensure_ascii=False), encoding="utf-8")
    return tmp_path / "test.json", images


def pseudo_cv_config(demo, tiny_models, tmp_path, test, **pseudo):
    config = fusion_config(demo, tiny_models, tmp_path / "cv", epochs=1)
    config["data"] |= {"test": str(test[0]), "test_images": str(test[1])}
    config["cv"] = {"folds": 2, "pseudo_label": {"threshold": 0.05, "max_fraction": 1.0} | pseudo}
    return load_config(write_config(config, tmp_path / "cv.yaml"))


def test_pseudo_posts_join_each_folds_training_posts_never_its_validation_posts(demo_small, tiny_models, tmp_path,
                                                                              data_with_copies, caplog):
    cfg = pseudo_cv_config(demo_small, tiny_models, tmp_path, data_with_copies)
    with caplog.at_level("INFO"):
        result = run_cv(cfg)
    assert result.complete and result.trained == [0, 1]
    cv_dir = result.cv_dir
    folds = read_folds(cv_dir / "folds.csv")
    train_posts = {p.id: p for p in load_posts(cfg.data.train, cfg.data.train_images, cfg.data).require_posts("x")}
    test_ids = set(json.loads(data_with_copies[0].read_text(encoding="utf-8")))
    summary = json.loads((cv_dir / "pseudo_labels.json").read_text(encoding="utf-8"))
    assert summary == result.pseudo_labels and set(summary["folds"]) == {"0", "1"}
    messages = [r.getMessage() for r in caplog.records]
    copies_left_out = 0
    for k in (0, 1):
        run_dir = cv_dir / f"fold-{k}"
        validation = {pid for pid, fold in folds.items() if fold == k}
        pseudo = read_rows(run_dir / "pseudo_labels.csv")
        pseudo_ids = {row["id"] for row in pseudo}
        # The validation posts are exactly fold k's, and no pseudo post is one of them or a near-copy of one.
        assert {row["id"] for row in read_rows(run_dir / "val_predictions.csv")} == validation
        assert pseudo_ids <= test_ids and not pseudo_ids & validation
        held_out = set().union(*(content_keys(train_posts[pid], cfg.cv.group_by) for pid in validation))
        copies_of_validation = {f"copy-{pid}" for pid in list(train_posts)[:8] if pid in validation}
        assert copies_of_validation and not copies_of_validation & pseudo_ids
        copies_left_out += len(copies_of_validation)
        # The labels are fold k's first-round top classes: the model that never saw fold k's gold labels.
        first = read_predictions(cv_dir / "round1" / f"fold-{k}" / "test_predictions.csv")
        top = dict(zip(first.ids, (first.labels[i] for i in first.probs.argmax(axis=1))))
        assert all(row["label"] == top[row["id"]] for row in pseudo)
        counts = summary["folds"][str(k)]
        assert counts["labels_from"] == f"round1/fold-{k}/test_predictions.csv"
        assert counts["near_copies"] >= len(copies_of_validation)
        assert counts["added"] == len(pseudo) == len(test_ids) - counts["near_copies"]  # threshold 0.05, no cap
        assert sum(counts["per_class"].values()) == len(pseudo)
        assert counts["per_class"] == {label: sum(r["label"] == label for r in pseudo) for label in first.labels}
        for row in pseudo:
            assert not content_keys(post(row["id"], _caption(data_with_copies[0], row["id"])), ["caption"]) & held_out
        # The second round trained on them: its training posts are its folds' plus the pseudo-labelled ones.
        training = len(folds) - len(validation)
        assert any(f"{training + len(pseudo)} training and {len(validation)} validation posts" in m for m in messages)
        assert any(m.startswith(f"fold {k}: pseudo-labels: {len(pseudo)} of {len(test_ids)} test posts added")
                   for m in messages)
    assert copies_left_out == 8  # every copy was a copy of some fold's validation post
    # oof.csv and test.csv come from the second round.
    oof = read_predictions(cv_dir / "oof.csv")
    second = read_predictions(cv_dir / "fold-0" / "val_predictions.csv")
    index = {pid: i for i, pid in enumerate(oof.ids)}
    np.testing.assert_allclose(oof.probs[[index[pid] for pid in second.ids]], second.probs, atol=1e-6)
    assert summary["per_class_total"] == {
        label: sum(summary["folds"][k]["per_class"][label] for k in ("0", "1")) for label in first.labels}


def _caption(test_file, pid):
    return json.loads(test_file.read_text(encoding="utf-8"))[pid]["caption"]


@pytest.mark.slow
def test_a_cv_killed_between_the_rounds_resumes_with_the_same_pseudo_labels(demo_small, tiny_models, tmp_path,
                                                                          data_with_copies):
    cfg = pseudo_cv_config(demo_small, tiny_models, tmp_path, data_with_copies, threshold=0.3, max_fraction=0.2)
    first = run_cv(cfg)
    cv_dir = first.cv_dir
    before = {name: (cv_dir / name).read_bytes() for name in ("oof.csv", "test.csv", "fold-1/pseudo_labels.csv")}
    kept = (cv_dir / "round1" / "fold-1" / "test_predictions.csv").stat().st_mtime_ns
    shutil.rmtree(cv_dir / "fold-1")  # killed after fold 1's first round, before its second ended
    again = run_cv(cfg)
    assert again.skipped == [0] and again.trained == [1]
    assert (cv_dir / "round1" / "fold-1" / "test_predictions.csv").stat().st_mtime_ns == kept  # not retrained
    assert {name: (cv_dir / name).read_bytes() for name in before} == before
    counts = json.loads((cv_dir / "pseudo_labels.json").read_text(encoding="utf-8"))["folds"]
    assert all(c["added"] <= c["cap"] == int(0.2 * c["training_posts"]) for c in counts.values())
    assert any(c["confident"] > c["added"] > 0 for c in counts.values())  # the cap took only some


def cv_then_sigkill(config, state, timeout=240):
    """`mmtune cv config`, SIGKILLed as soon as the checkpoint state file `state` exists."""
    process = subprocess.Popen([sys.executable, "-m", "mmtune", "cv", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None and not state.exists():
        time.sleep(0.005)
    assert process.poll() is None, "the cv ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.mark.slow
def test_a_cv_killed_in_its_second_round_resumes_to_the_same_predictions(demo_small, tiny_models, tmp_path,
                                                                        data_with_copies):
    outputs = {}
    for name in ("straight", "killed"):
        config = fusion_config(demo_small, tiny_models, tmp_path / name, epochs=2)
        config["data"] |= {"test": str(data_with_copies[0]), "test_images": str(data_with_copies[1])}
        config["cv"] = {"folds": 2, "pseudo_label": {"threshold": 0.3, "max_fraction": 0.2}}
        path = write_config(config, tmp_path / f"{name}.yaml")
        if name == "killed":  # in fold 1's second round, after its first epoch's checkpoint
            cv_then_sigkill(path, tmp_path / name / "fold-1" / "last" / "trainer_state.json")
            assert not (tmp_path / name / "oof.csv").exists()
        done = run_mmtune("cv", path)
        assert done.returncode == 0, done.stderr[-2000:]
        outputs[name] = [(tmp_path / name / f).read_bytes() for f in ("oof.csv", "test.csv", "pseudo_labels.json")]
    assert outputs["killed"] == outputs["straight"]


def test_pseudo_labels_need_a_test_file(demo_small, tiny_models, tmp_path):
    config = fusion_config(demo_small, tiny_models, tmp_path / "cv", epochs=1)
    config["data"] |= {"test": None}
    config["cv"] = {"folds": 2, "pseudo_label": {}}
    with pytest.raises(InputError, match="cv.pseudo_label: needs data.test"):
        run_cv(load_config(write_config(config, tmp_path / "cv.yaml")))


@pytest.mark.slow  # ~20-40 s on 2 shared cores
def test_with_frozen_towers_the_second_round_reads_every_feature_from_the_cache(demo_small, tiny_models, tmp_path,
                                                                                data_with_copies, caplog):
    config = fusion_config(demo_small, tiny_models, tmp_path / "cv", epochs=1, feature_cache=True,
                           cache_dir=str(tmp_path / "cache"))
    config["model"]["freeze"] = {"preset": "all"}
    config["data"] |= {"test": str(data_with_copies[0]), "test_images": str(data_with_copies[1])}
    config["cv"] = {"folds": 2, "pseudo_label": {"threshold": 0.05, "max_fraction": 1.0}}
    with caplog.at_level("INFO"):
        result = run_cv(load_config(write_config(config, tmp_path / "cv.yaml")))
    assert result.complete and all(f["added"] > 0 for f in result.pseudo_labels["folds"].values())
    messages = [r.getMessage() for r in caplog.records]
    computed = [i for i, m in enumerate(messages) if ": computing " in m]
    first_pseudo = next(i for i, m in enumerate(messages) if "pseudo-labels:" in m)
    assert computed and max(computed) < first_pseudo  # the first round encoded every post, test posts included
