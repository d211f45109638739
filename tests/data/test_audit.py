import json

import numpy as np
from PIL import Image

from mmtune.config import DataConfig
from mmtune.data.audit import InspectRequest, inspect_data, near_duplicate_pairs
from tests.conftest import SARCASM


def test_inspect_json_lists_every_fault_of_the_fixture(faulty_vimmsd):
    report = inspect_data(InspectRequest(faulty_vimmsd.json, faulty_vimmsd.images), DataConfig(labels=SARCASM))
    json.dumps(report)  # JSON-ready
    assert all(set(f) == {"id", "kind", "detail"} for f in report["faults"])
    found = {}
    for fault in report["faults"]:
        found.setdefault(fault["id"], set()).add(fault["kind"])
    for post_id, kinds in faulty_vimmsd.expected.items():
        assert kinds <= found[post_id], post_id
    assert report["posts"] == 14 and report["bad_posts"] == 6
    assert report["fault_counts"]["unsafe_path"] == 1
    labels = report["labels"]
    assert labels["counts"]["not-sarcasm"] == 7 and labels["counts"]["very-sarcasm"] == 1
    assert labels["imbalance_ratio"] == 7.0


def test_inspect_finds_duplicate_captions_with_conflicting_labels(faulty_vimmsd):
    report = inspect_data(InspectRequest(faulty_vimmsd.json, faulty_vimmsd.images), DataConfig())
    captions = report["captions"]
    # "Trời đẹp quá" (not-sarcasm) and "Trời đẹp quá!!" (multi-sarcasm) are one group.
    assert captions["duplicate_groups"] == 1 and captions["conflicting_groups"] == 1
    assert captions["conflicting_examples"][0]["ids"] == ["0", "14"]
    assert captions["words"]["max"] == 300


def test_inspect_image_statistics_and_duplicates(faulty_vimmsd):
    report = inspect_data(InspectRequest(faulty_vimmsd.json, faulty_vimmsd.images), DataConfig())
    images = report["images"]
    # 15 image names: one missing, one truncated, one refused (unsafe) -> 12 readable.
    assert images["formats"] == {"JPEG": 11, "PNG": 1} and images["readable"] == 12
    assert images["per_post"] == {1: 13, 2: 1}
    assert images["aspect"]["max"] == 4.0
    # ok.jpg is shared by posts 0, 7, 8, 9, 10; ok2.jpg by 10, 11, 13, 14 and the repeated 0.
    assert images["duplicate_groups"] == 2
    assert ["0", "10", "7", "8", "9"] in images["duplicate_examples"]


def noisy(seed, size=(96, 96)):
    """A blocky random picture: distinct seeds give far-apart perceptual hashes."""
    blocks = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return Image.fromarray(blocks).resize(size, Image.Resampling.NEAREST)


def test_near_duplicates_and_train_test_leakage(tmp_path):
    images = tmp_path / "img"
    images.mkdir()
    base = noisy(1)
    base.save(images / "a.jpg", quality=95)
    base.save(images / "a_low.jpg", quality=40)  # the same picture re-encoded: a near-duplicate
    noisy(3).save(images / "b.jpg")
    noisy(5).save(images / "test_only.jpg")
    train = {"1": {"image": "a.jpg", "caption": "một hai ba bốn năm sáu", "label": "x"},
             "2": {"image": "a_low.jpg", "caption": "khác", "label": "y"},
             "3": {"image": "b.jpg", "caption": "câu này bị lộ", "label": "x"}}
    test = {"10": {"image": "b.jpg", "caption": "mới", "label": None},
            "11": {"image": "test_only.jpg", "caption": "Câu này bị lộ!", "label": None},
            "12": {"image": "a.jpg", "caption": "ngắn", "label": None}}
    (tmp_path / "train.json").write_text(json.dumps(train, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "test.json").write_text(json.dumps(test, ensure_ascii=False), encoding="utf-8")
    request = InspectRequest(tmp_path / "train.json", images, tmp_path / "test.json", images)
    report = inspect_data(request, DataConfig())
    assert report["images"]["near_duplicate_groups"] == 1
    assert report["images"]["near_duplicate_examples"] == [["1", "2"]]
    leak = report["test"]["leakage"]
    assert leak["test_posts_with_train_caption"] == 1 and leak["example_ids"]["caption"] == ["11"]
    assert leak["test_posts_with_train_image"] == 2 and leak["example_ids"]["image"] == ["10", "12"]
    assert report["test"]["labels"]["unlabelled"] == 3
    shift = report["test"]["shift"]
    assert shift["train_mean_words"] > shift["test_mean_words"]
    assert shift["test_to_train_ratio"] < 1


def test_near_duplicate_search_matches_brute_force():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, size=200, dtype=np.int64).astype(np.uint64)
    values = list(base)
    for i in range(40):  # near copies 0..6 bits away
        flipped = base[i]
        for bit in rng.choice(64, size=i % 7, replace=False):
            flipped ^= np.uint64(1) << np.uint64(bit)
        values.append(flipped)
    hashes = {f"h{i}": int(v) for i, v in enumerate(values)}
    fast = {(a, b) for a, b, _ in near_duplicate_pairs(hashes, max_bits=4)}
    keys = list(hashes)
    brute = {(keys[i], keys[j]) for i in range(len(keys)) for j in range(i + 1, len(keys))
             if bin(hashes[keys[i]] ^ hashes[keys[j]]).count("1") <= 4}
    normalize = {tuple(sorted(p)) for p in fast}
    assert normalize == {tuple(sorted(p)) for p in brute}
    assert len(brute) >= 20
