"""Synthetic ViMMSD demo data: format, determinism, rules, duplicates, leakage and injected faults."""

from __future__ import annotations

import csv
import hashlib
import json
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmtune.data import synthetic as syn
from mmtune.sarcasm import IMAGE, MULTI, NOT, SARCASM_LABELS, TEXT

N_TRAIN, N_TEST = 300, 60


def _load(path: Path) -> dict[str, dict]:
    return json.loads(path.read_text(encoding="utf-8"))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _names(record: dict) -> list[str]:
    return record["image"] if isinstance(record["image"], list) else [record["image"]]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> syn.DemoData:
    return syn.make_demo_data(tmp_path_factory.mktemp("faulty"), n_train=N_TRAIN, n_test=N_TEST, seed=0)


@pytest.fixture(scope="module")
def clean_demo(tmp_path_factory: pytest.TempPathFactory) -> syn.DemoData:
    return syn.make_demo_data(tmp_path_factory.mktemp("clean"), n_train=N_TRAIN, n_test=N_TEST, seed=0,
                              inject_faults=False)


@pytest.fixture(scope="module")
def small_specs() -> syn._Specs:
    """The specs behind the `demo` fixture's files."""
    return syn._generate_specs(N_TRAIN, N_TEST, seed=0, image_size=128, inject_faults=True)


@pytest.fixture(scope="module")
def specs() -> syn._Specs:
    """Full-size specs (no rendering): cheap, and large enough for rates and shares."""
    return syn._generate_specs(2000, 400, seed=0, image_size=128, inject_faults=True)


# ------------------------------------------------------------------------------------ determinism


def test_same_seed_gives_byte_identical_files(tmp_path: Path, demo: syn.DemoData) -> None:
    again = syn.make_demo_data(tmp_path / "again", n_train=N_TRAIN, n_test=N_TEST, seed=0)
    assert _files(again.root) == _files(demo.root)


def test_other_seed_gives_other_data(tmp_path: Path, demo: syn.DemoData) -> None:
    other = syn.make_demo_data(tmp_path / "other", n_train=N_TRAIN, n_test=N_TEST, seed=1)
    assert other.train.read_bytes() != demo.train.read_bytes()
    assert set(_files(other.train_images)).isdisjoint(_files(demo.train_images))


# ---------------------------------------------------------------------------------------- format


def test_paths(demo: syn.DemoData) -> None:
    assert demo.train == demo.root / "vimmsd-train.json"
    assert demo.test == demo.root / "vimmsd-public-test.json"
    assert demo.train_images == demo.root / "train-images"
    assert demo.test_images == demo.root / "test-images"
    assert demo.test_gold == demo.root / "public-test-gold.csv"


def test_json_structure(demo: syn.DemoData) -> None:
    train, test = _load(demo.train), _load(demo.test)
    assert len(train) == N_TRAIN and len(test) == N_TEST
    for records in (train, test):
        ids = [int(k) for k in records]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert any(b - a > 1 for a, b in zip(ids, ids[1:], strict=False)), "ids should have gaps"
        for record in records.values():
            assert set(record) == {"image", "caption", "label"}
            assert isinstance(record["caption"], str)
    assert max(map(int, train)) < min(map(int, test)), "test ids live in their own range"
    assert all(r["label"] in SARCASM_LABELS for r in train.values())
    assert all(r["label"] is None for r in test.values())
    assert "null" in demo.test.read_text(encoding="utf-8")
    lists = [r for r in train.values() if not isinstance(r["image"], str)]
    assert len(lists) == 1 and len(lists[0]["image"]) == 2
    assert all(isinstance(r["image"], str) for r in test.values())


def test_json_is_utf8_not_ascii_escaped(demo: syn.DemoData) -> None:
    raw = demo.train.read_bytes().decode("utf-8")
    assert "\\u" not in raw and any(ch in raw for ch in "ơưđạế")


def test_image_names_are_sha256_of_bytes(demo: syn.DemoData) -> None:
    for records, folder in ((_load(demo.train), demo.train_images), (_load(demo.test), demo.test_images)):
        for record in records.values():
            for name in _names(record):
                path = folder / name
                if path.exists():
                    assert name == hashlib.sha256(path.read_bytes()).hexdigest() + ".jpg"


def test_gold_csv_matches_test_ids(demo: syn.DemoData) -> None:
    with demo.test_gold.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "label"]
    assert [r[0] for r in rows[1:]] == list(_load(demo.test))
    assert {r[1] for r in rows[1:]} <= set(SARCASM_LABELS)


# ----------------------------------------------------------------------------------------- labels


@pytest.mark.parametrize("split", ["train", "test"])
def test_label_shares(specs: syn._Specs, split: str) -> None:
    posts = getattr(specs, split)
    counts = Counter(p.label for p in posts)
    for label, share in syn.LABEL_SHARES.items():
        assert counts[label] / len(posts) == pytest.approx(share, abs=0.01)


def test_small_data_still_has_every_class(clean_demo: syn.DemoData) -> None:
    counts = Counter(r["label"] for r in _load(clean_demo.train).values())
    assert counts[TEXT] >= 5 and counts[IMAGE] >= 10
    assert counts[NOT] > counts[MULTI] > counts[IMAGE] > counts[TEXT]


def test_labels_follow_the_rules(specs: syn._Specs) -> None:
    for post in specs.train + specs.test:
        assert syn.LABEL_RULES[(post.caption_kind, post.image_kind)] == post.label
        assert all(image.kind == post.image_kind for image in post.images)
        if post.label == MULTI and post.caption_kind in (syn.POS, syn.NEG):
            assert {post.caption_kind, post.image_kind} == {syn.POS, syn.NEG}
        if post.label == NOT:
            assert post.caption_kind == post.image_kind and post.caption_kind != syn.IRONIC
        if post.label == TEXT:
            assert (post.caption_kind, post.image_kind) == (syn.IRONIC, syn.NEUTRAL)
        if post.label == IMAGE:
            assert (post.caption_kind, post.image_kind) == (syn.NEUTRAL, syn.IRONIC)


def test_pos_neg_caption_topic_matches_the_scene(specs: syn._Specs) -> None:
    for post in specs.train:
        if post.image_kind in (syn.POS, syn.NEG) and not post.image_as_list:
            assert syn.THEME_TOPIC[post.images[0].scene] == post.topic


def test_no_single_modality_decides_the_label(specs: syn._Specs) -> None:
    posts = specs.train
    for attr in ("caption_kind", "image_kind"):
        by_kind: dict[str, Counter] = defaultdict(Counter)
        for post in posts:
            by_kind[getattr(post, attr)][post.label] += 1
        assert all(len(labels) == 2 for labels in by_kind.values()), attr
        best_single = sum(max(c.values()) for c in by_kind.values()) / len(posts)
        assert best_single < 0.7, f"{attr} alone predicts {best_single:.2f} of labels"


def _image_features(path: Path) -> np.ndarray:
    img = Image.open(path).convert("RGB")
    grid = np.asarray(img.resize((4, 4), Image.Resampling.BOX), dtype=np.float32).ravel() / 255
    hsv = np.asarray(img.resize((32, 32), Image.Resampling.BOX).convert("HSV"), dtype=np.float32) / 255
    hist = [np.histogram(hsv[..., c], bins=8, range=(0, 1))[0] / 1024 for c in range(3)]
    return np.concatenate([grid, *hist])


def _nearest_centroid(x: np.ndarray, y: list[str], x_new: np.ndarray) -> np.ndarray:
    mu, sd = x.mean(0), x.std(0) + 1e-6
    z, z_new, labels = (x - mu) / sd, (x_new - mu) / sd, np.array(y)
    classes = sorted(set(y))
    centroids = np.stack([z[labels == c].mean(0) for c in classes])
    return np.array(classes)[((z_new[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)]


def _tokens(text: str) -> list[str]:
    words = unicodedata.normalize("NFC", text).lower().split()
    return words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]


def _naive_bayes(texts: list[str], y: list[str], new_texts: list[str]) -> np.ndarray:
    """Multinomial naive Bayes on words and word pairs (Laplace smoothing)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for text, label in zip(texts, y, strict=True):
        counts[label].update(_tokens(text))
    prior, vocab = Counter(y), set().union(*counts.values())
    totals = {c: sum(counts[c].values()) + len(vocab) for c in counts}
    predictions = []
    for text in new_texts:
        known = [t for t in _tokens(text) if t in vocab]
        scores = {c: np.log(prior[c]) + sum(np.log((counts[c][t] + 1) / totals[c]) for t in known)
                  for c in counts}
        predictions.append(max(scores, key=scores.__getitem__))
    return np.array(predictions)


def test_kinds_are_learnable_from_pixels_and_words(demo: syn.DemoData, small_specs: syn._Specs) -> None:
    """Colour statistics recover the image kind and words the caption kind, from the written files.

    Numpy-only models on purpose: importing scikit-learn alone costs seconds.
    """
    train = _load(demo.train)
    posts = [p for p in small_specs.train if not p.faults]
    fit, held = posts[:200], posts[200:]
    images = np.stack([_image_features(demo.train_images / train[p.id]["image"]) for p in posts])
    img_pred = _nearest_centroid(images[:200], [p.image_kind for p in fit], images[200:])
    texts = [train[p.id]["caption"] for p in posts]
    cap_pred = _naive_bayes(texts[:200], [p.caption_kind for p in fit], texts[200:])
    img_acc = np.mean(img_pred == np.array([p.image_kind for p in held]))
    cap_acc = np.mean(cap_pred == np.array([p.caption_kind for p in held]))
    rule_labels = [syn.LABEL_RULES.get((c, i)) for c, i in zip(cap_pred, img_pred, strict=True)]
    label_acc = np.mean([label == p.label for label, p in zip(rule_labels, held, strict=True)])
    assert img_acc > 0.8 and cap_acc > 0.8 and label_acc > 0.7, (img_acc, cap_acc, label_acc)


def test_positive_scenes_are_brighter_than_negative_ones(demo: syn.DemoData, small_specs: syn._Specs) -> None:
    train = _load(demo.train)
    luma: dict[str, list[float]] = defaultdict(list)
    for post in small_specs.train:
        if not post.faults:
            img = Image.open(demo.train_images / train[post.id]["image"]).convert("L")
            luma[post.image_kind].append(float(np.asarray(img).mean()))
    assert np.mean(luma[syn.POS]) > np.mean(luma[syn.NEG]) + 60


# ----------------------------------------------------------------------------- captions, duplicates


def test_social_media_flavour(specs: syn._Specs) -> None:
    captions = [p.caption for p in specs.train + specs.test]
    joined = "\n".join(captions)
    for marker in ("#", "@", "🙃", ":))", "c.h.ó", " ko ", "mn"):
        assert marker in joined, marker
    nfd = sum(c != unicodedata.normalize("NFC", c) for c in captions) / len(captions)
    assert 0.01 < nfd < 0.06


def test_duplicate_caption_rate(specs: syn._Specs) -> None:
    counts = Counter(p.caption for p in specs.train)
    shared = sum(counts[p.caption] > 1 for p in specs.train) / len(specs.train)
    assert 0.18 <= shared <= 0.30
    labels: dict[str, set[str]] = defaultdict(set)
    for post in specs.train:
        labels[post.caption].add(post.label)
    groups = [c for c, n in counts.items() if n > 1]
    conflicting = sum(len(labels[c]) > 1 for c in groups)
    assert 0.05 * len(groups) < conflicting < 0.5 * len(groups)


def test_exact_and_near_duplicate_images(demo: syn.DemoData, small_specs: syn._Specs) -> None:
    train = _load(demo.train)
    uses = Counter(name for r in train.values() for name in _names(r))
    assert sum(n > 1 for n in uses.values()) >= 2, "a file shared by two posts"
    by_seed: dict[int, list[syn._PostSpec]] = defaultdict(list)
    for post in small_specs.train:
        by_seed[post.images[0].seed].append(post)
    near = [group for group in by_seed.values() if len({p.images[0] for p in group}) > 1]
    assert len(near) >= 2
    for group in near:
        names = {train[p.id]["image"] for p in group}
        assert len(names) > 1, "a near duplicate is another file"
        a, b = (Image.open(demo.train_images / n).convert("RGB").resize((64, 64)) for n in list(names)[:2])
        assert np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)).mean() < 8


def test_test_captions_are_shorter(specs: syn._Specs) -> None:
    def mean_words(posts: list[syn._PostSpec]) -> float:
        return float(np.mean([len(p.caption.split()) for p in posts if "leak" not in p.tags]))

    ratio = mean_words(specs.test) / mean_words([p for p in specs.train if not p.faults])
    assert 0.35 < ratio < 0.7


def test_leaked_test_posts(demo: syn.DemoData) -> None:
    train, test = _load(demo.train), _load(demo.test)
    in_train = {(r["caption"], r["image"]): r["label"] for r in train.values() if isinstance(r["image"], str)}
    gold = dict(csv.reader(demo.test_gold.open(encoding="utf-8")))
    leaked = [(k, r) for k, r in test.items() if (r["caption"], r["image"]) in in_train]
    assert len(leaked) == syn.LEAKED_TEST_POSTS
    for key, record in leaked:
        assert gold[key] == in_train[(record["caption"], record["image"])]
        assert (demo.test_images / record["image"]).read_bytes()


# ----------------------------------------------------------------------------------------- faults


def _fault_report(demo: syn.DemoData) -> Counter:
    found: Counter = Counter()
    for record in _load(demo.train).values():
        caption = record["caption"]
        if caption == "":
            found["empty_caption"] += 1
        elif not any(ch.isalnum() for ch in caption):
            found["emoji_only_caption"] += 1
        if len(caption.split()) > 300:
            found["long_caption"] += 1
        if isinstance(record["image"], list):
            found["image_list"] += 1
        for name in _names(record):
            path = demo.train_images / name
            if not path.exists():
                found["missing_image"] += 1
                continue
            with Image.open(path) as img:
                if img.format == "PNG":
                    found["png_as_jpg"] += 1
                if img.width > 3 * img.height:
                    found["panorama"] += 1
                try:
                    img.load()
                except OSError:
                    found["truncated_image"] += 1
    return found


def test_injected_faults_are_present(demo: syn.DemoData) -> None:
    assert _fault_report(demo) == Counter(syn.fault_counts(N_TRAIN))
    assert set(syn.FAULTS) == set(syn.fault_counts(N_TRAIN))


def test_no_faults_when_disabled(clean_demo: syn.DemoData) -> None:
    assert _fault_report(clean_demo) == Counter()


def test_test_split_has_no_faults(demo: syn.DemoData) -> None:
    for record in _load(demo.test).values():
        assert record["caption"].strip()
        with Image.open(demo.test_images / record["image"]) as img:
            img.load()
            assert img.format == "JPEG" and img.width == img.height


def test_faults_need_enough_posts(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least"):
        syn.make_demo_data(tmp_path, n_train=5, n_test=2)
