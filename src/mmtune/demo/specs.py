"""The per-post plan: caption and image kinds, labels, captions, duplicate images, leaks and faults."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field, replace

from mmtune.demo.captions import EMOJI_ONLY, _compose_caption, _long_caption, _weighted
from mmtune.demo.rules import KINDS, LABEL_COMBOS, LABEL_SHARES, NEG, NEUTRAL, POS, TOPIC_THEME, TOPICS
from mmtune.demo.scenes import IRONIC_SCENES, NEUTRAL_SCENES

CAPTION_REUSE_RATE = 0.14  # share of train posts that copy an earlier caption (~23% end up shared)
LEAKED_TEST_POSTS = 2  # test posts that are exact copies (caption + image) of train posts
PNG_AS_JPG_FRACTION = 0.015
# What inject_faults=True puts into the TRAIN file; fault_counts() gives the numbers.
FAULTS: dict[str, str] = {
    "png_as_jpg": "PNG bytes saved under a <sha256>.jpg name (1.5% of train, at least 1)",
    "panorama": "3 images wider than 3:1",
    "emoji_only_caption": "2 captions made of emoji only",
    "empty_caption": "2 empty captions",
    "missing_image": "1 post whose image file is not written",
    "truncated_image": "1 JPEG cut short (cannot be decoded)",
    "image_list": "1 post whose `image` is a list of 2 file names",
    "long_caption": "1 caption longer than 300 words",
}

SAME_LABEL_REUSE = 0.7  # a reused caption mostly keeps its label: ~20% of duplicate groups conflict


def fault_counts(n_train: int) -> dict[str, int]:
    """How many posts of each fault `make_demo_data(..., inject_faults=True)` writes."""
    return {
        "png_as_jpg": max(1, round(PNG_AS_JPG_FRACTION * n_train)),
        "panorama": 3,
        "emoji_only_caption": 2,
        "empty_caption": 2,
        "missing_image": 1,
        "truncated_image": 1,
        "image_list": 1,
        "long_caption": 1,
    }


@dataclass(frozen=True)
class _ImageSpec:
    kind: str
    scene: str
    seed: int
    width: int
    height: int
    quality: int
    fmt: str = "JPEG"
    resize_to: tuple[int, int] | None = None
    truncate: bool = False


@dataclass
class _PostSpec:
    id: str
    label: str  # the gold label; written as null for test posts
    caption: str
    caption_kind: str
    image_kind: str
    topic: str
    images: list[_ImageSpec]
    faults: set[str] = field(default_factory=set)
    # Not faults: "dup_image", "dup_image_source", "leak", "leak_source"; keep fault injection off them.
    tags: set[str] = field(default_factory=set)
    image_as_list: bool = False
    missing: bool = False


@dataclass
class _Specs:
    train: list[_PostSpec]
    test: list[_PostSpec]


def _new_image(rng: random.Random, kind: str, topic: str, size: int) -> _ImageSpec:
    if kind in (POS, NEG):
        scene = TOPIC_THEME[topic]
    else:
        scene = rng.choice(NEUTRAL_SCENES if kind == NEUTRAL else IRONIC_SCENES)
    return _ImageSpec(kind=kind, scene=scene, seed=rng.getrandbits(48), width=size, height=size,
                      quality=rng.randint(70, 95))


def _label_sequence(rng: random.Random, n: int) -> list[str]:
    """Exact class counts (largest remainder) in a random order, so small n still has rare classes."""
    raw = {label: share * n for label, share in LABEL_SHARES.items()}
    counts = {label: int(v) for label, v in raw.items()}
    for label in sorted(raw, key=lambda lb: raw[lb] - counts[lb], reverse=True)[: n - sum(counts.values())]:
        counts[label] += 1
    labels = [label for label, c in counts.items() for _ in range(c)]
    rng.shuffle(labels)
    return labels


def _reuse_caption(rng: random.Random, label: str, pool: list[tuple[str, str, str, str]]
                   ) -> tuple[str, str, str, str] | None:
    """An earlier caption that can carry `label`: (caption, caption kind, topic, image kind it needs).

    Picking from the pool with repeats makes popular captions more popular, so groups of 3+ appear.
    """
    image_kind_for = {cap: img for (cap, img), _ in LABEL_COMBOS[label]}
    candidates = [entry for entry in pool if entry[1] in image_kind_for]
    same_label = [entry for entry in candidates if entry[3] == label]
    if same_label and rng.random() < SAME_LABEL_REUSE:
        candidates = same_label
    if not candidates:
        return None
    caption, cap_kind, topic, _ = rng.choice(candidates)
    return caption, cap_kind, topic, image_kind_for[cap_kind]


def _generate_split(rng: random.Random, n: int, split: str, first_id: int, size: int) -> list[_PostSpec]:
    posts: list[_PostSpec] = []
    pool: list[tuple[str, str, str, str]] = []  # (caption, caption kind, topic, label)
    next_id = first_id
    reuse_rate = CAPTION_REUSE_RATE if split == "train" else 0.0
    for label in _label_sequence(rng, n):
        reused = _reuse_caption(rng, label, pool) if rng.random() < reuse_rate else None
        if reused is not None:
            caption, cap_kind, topic, img_kind = reused
        else:
            cap_kind, img_kind = _weighted(rng, LABEL_COMBOS[label])  # type: ignore[misc]
            topic = rng.choice(TOPICS)
            caption = _compose_caption(rng, cap_kind, topic, split)
        pool.append((caption, cap_kind, topic, label))
        image = _new_image(rng, img_kind, topic, size)
        posts.append(_PostSpec(id=str(next_id), label=label, caption=caption, caption_kind=cap_kind,
                               image_kind=img_kind, topic=topic, images=[image]))
        next_id += 1 if rng.random() < 0.9 else 2  # gaps, as in the real files
    return posts


def _add_image_duplicates(rng: random.Random, posts: list[_PostSpec], n_exact: int, n_near: int) -> None:
    """Reuse an earlier post's drawing: identical bytes (exact) or re-encoded / resized (near)."""
    half = len(posts) // 2  # targets from the second half, so every target has earlier candidates
    targets = rng.sample(range(half, len(posts)), min(len(posts) - half, n_exact + n_near))
    target_set = set(targets)
    for i, t in enumerate(targets):
        post = posts[t]
        sources = [p for j, p in enumerate(posts[:t]) if j not in target_set and not p.tags
                   and (p.image_kind, p.images[0].scene) == (post.image_kind, post.images[0].scene)]
        if not sources:
            continue
        source = rng.choice(sources)
        source.tags.add("dup_image_source")
        spec = source.images[0]
        if i >= n_exact:
            if rng.random() < 0.5:
                spec = replace(spec, quality=spec.quality - rng.randint(12, 25))
            else:
                shrink = rng.randint(4, 12)
                spec = replace(spec, resize_to=(spec.width - shrink, spec.height - shrink))
        post.images = [spec]
        post.tags.add("dup_image")


def _add_leaks(rng: random.Random, train: list[_PostSpec], test: list[_PostSpec], n: int) -> None:
    sources = [p for p in train if not p.tags]
    n = min(n, len(sources), len(test))
    for pos, src in zip(rng.sample(range(len(test)), n), rng.sample(sources, n), strict=True):
        test[pos] = replace(src, id=test[pos].id, images=list(src.images), faults=set(), tags={"leak"})
        src.tags.add("leak_source")


def _inject_faults(rng: random.Random, posts: list[_PostSpec], size: int) -> None:
    counts = fault_counts(len(posts))
    captions = Counter(p.caption for p in posts)
    # Faults go to posts that share no caption or file, so each fault is counted once and exactly.
    free = [p for p in posts if not p.tags]
    if len(free) < sum(counts.values()):
        raise ValueError(f"inject_faults needs more train posts than {len(posts)} (try at least 40)")
    rng.shuffle(free)
    free.sort(key=lambda p: captions[p.caption] > 1)  # stable: unique captions first
    taken: set[str] = set()

    def pick(n: int, kinds: tuple[str, ...] = KINDS) -> list[_PostSpec]:
        chosen = [p for p in free if p.id not in taken and p.caption_kind in kinds][:n]
        if len(chosen) < n:  # tiny data sets: fall back to posts of any caption kind
            chosen += [p for p in free if p.id not in taken and p not in chosen][: n - len(chosen)]
        taken.update(p.id for p in chosen)
        return chosen

    for p in pick(counts["emoji_only_caption"], (NEUTRAL,)):
        p.caption, p.faults = rng.choice(EMOJI_ONLY), {"emoji_only_caption"}
    for p in pick(counts["empty_caption"], (NEUTRAL,)):
        p.caption, p.faults = "", {"empty_caption"}
    for p in pick(counts["long_caption"], (POS, NEG)):
        p.caption, p.faults = _long_caption(rng, p.caption_kind, p.topic), {"long_caption"}
    for p in pick(counts["png_as_jpg"]):
        p.images, p.faults = [replace(p.images[0], fmt="PNG")], {"png_as_jpg"}
    for p in pick(counts["panorama"]):
        p.images, p.faults = [replace(p.images[0], width=round(size * 3.3))], {"panorama"}
    for p in pick(counts["truncated_image"]):
        p.images, p.faults = [replace(p.images[0], truncate=True)], {"truncated_image"}
    for p in pick(counts["missing_image"]):
        p.missing, p.faults = True, {"missing_image"}
    for p in pick(counts["image_list"]):
        p.images.append(_new_image(rng, p.image_kind, p.topic, size))
        p.image_as_list, p.faults = True, {"image_list"}


def _generate_specs(n_train: int, n_test: int, seed: int, image_size: int, inject_faults: bool) -> _Specs:
    train = _generate_split(random.Random(f"mmtune-demo/{seed}/train"), n_train, "train", 0, image_size)
    rng = random.Random(f"mmtune-demo/{seed}/extras")
    n_dup = max(2, n_train // 250)
    _add_image_duplicates(rng, train, n_dup, n_dup)
    last_id = int(train[-1].id) if train else 0
    test_first = (last_id // 10_000 + 1) * 10_000  # test ids live in their own range
    test = _generate_split(random.Random(f"mmtune-demo/{seed}/test"), n_test, "test", test_first, image_size)
    _add_leaks(rng, train, test, min(LEAKED_TEST_POSTS, n_test, n_train))
    if inject_faults:
        _inject_faults(random.Random(f"mmtune-demo/{seed}/faults"), train, image_size)
    return _Specs(train=train, test=test)
