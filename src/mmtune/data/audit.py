"""`mmtune inspect`: one streaming pass over a data file -> a JSON-ready audit.

Only metadata is kept per post (ids, label, caption key and length, image hashes and sizes), so
memory grows with the number of posts, never with pixels.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmtune.config import DataConfig
from mmtune.data.checks import FAULT_KINDS, CheckedPost, Fault, RecordChecker, bad_kinds_for
from mmtune.data.readers import iter_records
from mmtune.data.text import caption_key, word_count

NEAR_DUPLICATE_BITS = 4
MAX_EXAMPLES = 10


@dataclass
class _FileFacts:
    """What one pass over a file keeps: per-post metadata only."""

    n_rows: int = 0
    n_bad: int = 0
    labels: Counter = field(default_factory=Counter)
    unlabelled: int = 0
    caption_groups: dict[str, list[tuple[str, str | None]]] = field(default_factory=lambda: defaultdict(list))
    words: list[int] = field(default_factory=list)
    chars: list[int] = field(default_factory=list)
    images_per_post: list[int] = field(default_factory=list)
    image_posts: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    phash: dict[str, int] = field(default_factory=dict)
    widths: list[int] = field(default_factory=list)
    heights: list[int] = field(default_factory=list)
    formats: Counter = field(default_factory=Counter)
    faults: list[Fault] = field(default_factory=list)

    def add(self, checked: CheckedPost, bad_kinds: frozenset[str]) -> None:
        record = checked.record
        self.n_rows += 1
        self.n_bad += checked.is_bad(bad_kinds)
        self.faults += checked.faults
        if record.label is None:
            self.unlabelled += 1
        else:
            self.labels[record.label] += 1
        key = caption_key(record.text)
        if key:
            self.caption_groups[key].append((record.id, record.label))
        self.words.append(word_count(record.text))
        self.chars.append(len(record.text))
        self.images_per_post.append(len(record.images))
        for probe in checked.probes:
            self.widths.append(probe.width)
            self.heights.append(probe.height)
            self.formats[probe.format] += 1
            if probe.sha256 is not None:
                self.image_posts[probe.sha256].append(record.id)
                if probe.phash is not None:
                    self.phash[probe.sha256] = probe.phash


def scan_file(
    path: Path, images_dir: Path | None, cfg: DataConfig, labels: list[str] | None,
    progress: Callable[[], None] | None = None,
) -> _FileFacts:
    facts = _FileFacts()
    checker = RecordChecker(cfg, images_dir, labels=labels, require_label=False, hashes=True)
    bad = bad_kinds_for(cfg)
    for checked in checker.check_all(iter_records(path, cfg.columns, cfg.format)):
        facts.add(checked, bad)
        if progress is not None:
            progress()
    return facts


# ----------------------------------------------------------------------------------------------
# Statistics


def distribution(values: Iterable[float]) -> dict[str, float]:
    array = np.asarray(list(values), dtype=np.float64)
    if array.size == 0:
        return {"count": 0}
    q = np.percentile(array, [5, 50, 95])
    return {
        "count": int(array.size), "mean": round(float(array.mean()), 3), "min": float(array.min()),
        "p5": float(q[0]), "median": float(q[1]), "p95": float(q[2]), "max": float(array.max()),
    }


def near_duplicate_pairs(hashes: dict[str, int], max_bits: int = NEAR_DUPLICATE_BITS) -> list[tuple[str, str, int]]:
    """Pairs of distinct images whose 64-bit perceptual hashes differ in at most `max_bits` bits.

    Multi-index hashing: split the hash into max_bits+1 chunks; two hashes within max_bits differ
    in at most max_bits chunks, so they agree on at least one (pigeonhole). Only hashes that share a
    chunk are compared, which keeps 100k images far from the n^2 comparisons.
    """
    keys = list(hashes)
    if len(keys) < 2:
        return []
    values = np.array([hashes[k] for k in keys], dtype=np.uint64)
    n_chunks = max_bits + 1
    bounds = np.linspace(0, 64, n_chunks + 1).astype(int)
    found: set[tuple[int, int]] = set()
    for low, high in zip(bounds[:-1], bounds[1:]):
        chunk = (values >> np.uint64(low)) & np.uint64((1 << (high - low)) - 1)
        order = np.argsort(chunk, kind="stable")
        ordered = chunk[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        for begin, end in zip(starts, [*starts[1:], len(order)]):
            if end - begin < 2:
                continue
            members = order[begin:end]
            xor = values[members][:, None] ^ values[members][None, :]
            distance = np.bitwise_count(xor)
            rows, cols = np.nonzero(np.triu(distance <= max_bits, k=1))
            found.update(zip(members[rows].tolist(), members[cols].tolist()))
    result = []
    for a, b in sorted(found):
        bits = int(np.bitwise_count(values[a] ^ values[b]))
        result.append((keys[a], keys[b], bits))
    return result


def _connected_groups(pairs: Iterable[tuple[str, str]]) -> list[set[str]]:
    neighbours: dict[str, set[str]] = defaultdict(set)
    for a, b in pairs:
        neighbours[a].add(b)
        neighbours[b].add(a)
    seen: set[str] = set()
    groups = []
    for start in neighbours:
        if start in seen:
            continue
        stack, group = [start], set()
        while stack:
            node = stack.pop()
            if node not in group:
                group.add(node)
                stack.extend(neighbours[node] - group)
        seen |= group
        groups.append(group)
    return groups


def _caption_summary(facts: _FileFacts) -> dict[str, Any]:
    groups = [members for members in facts.caption_groups.values() if len(members) > 1]
    conflicting = [g for g in groups if len({label for _, label in g if label is not None}) > 1]
    return {
        "words": distribution(facts.words),
        "chars": distribution(facts.chars),
        "duplicate_groups": len(groups),
        "posts_in_duplicate_groups": sum(len(g) for g in groups),
        "conflicting_groups": len(conflicting),
        "conflicting_examples": [
            {"ids": [i for i, _ in g], "labels": sorted({str(lb) for _, lb in g})} for g in conflicting[:MAX_EXAMPLES]
        ],
    }


def _image_summary(facts: _FileFacts) -> dict[str, Any]:
    exact = [sorted(set(ids)) for ids in facts.image_posts.values() if len(set(ids)) > 1]
    near = _connected_groups((a, b) for a, b, _ in near_duplicate_pairs(facts.phash))
    aspects = [max(w, h) / max(1, min(w, h)) for w, h in zip(facts.widths, facts.heights)]
    return {
        "readable": len(facts.widths),
        "per_post": dict(sorted(Counter(facts.images_per_post).items())),
        "formats": dict(facts.formats.most_common()),
        "width": distribution(facts.widths),
        "height": distribution(facts.heights),
        "aspect": distribution(aspects),
        "duplicate_groups": len(exact),
        "posts_sharing_an_image": sum(len(g) for g in exact),
        "duplicate_examples": exact[:MAX_EXAMPLES],
        "near_duplicate_groups": len(near),
        "near_duplicate_examples": [
            sorted({pid for sha in g for pid in facts.image_posts[sha]}) for g in near[:MAX_EXAMPLES]
        ],
        "near_duplicate_max_bits": NEAR_DUPLICATE_BITS,
    }


def _label_summary(facts: _FileFacts) -> dict[str, Any]:
    counts = dict(sorted(facts.labels.items(), key=lambda item: (-item[1], item[0])))
    ratio = max(counts.values()) / min(counts.values()) if counts else None
    return {"counts": counts, "unlabelled": facts.unlabelled,
            "imbalance_ratio": round(ratio, 2) if ratio is not None else None}


def summarize(path: Path, images_dir: Path | None, facts: _FileFacts) -> dict[str, Any]:
    return {
        "file": str(path),
        "images_dir": str(images_dir) if images_dir else None,
        "posts": facts.n_rows,
        "bad_posts": facts.n_bad,
        "labels": _label_summary(facts),
        "captions": _caption_summary(facts),
        "images": _image_summary(facts),
        "fault_counts": {kind: n for kind in FAULT_KINDS if (n := sum(f.kind == kind for f in facts.faults))},
        "faults": [fault.as_dict() for fault in facts.faults],
    }


def _leakage(train: _FileFacts, test: _FileFacts) -> dict[str, Any]:
    shared_captions = sorted(set(train.caption_groups) & set(test.caption_groups))
    shared_images = sorted(set(train.image_posts) & set(test.image_posts))
    test_only = {sha: h for sha, h in test.phash.items() if sha not in train.image_posts}
    train_only = {sha: h for sha, h in train.phash.items() if sha not in test.image_posts}
    tagged = {("train", s): h for s, h in train_only.items()} | {("test", s): h for s, h in test_only.items()}
    keys = {f"{side}:{sha}": h for (side, sha), h in tagged.items()}
    near = [(a, b) for a, b, _ in near_duplicate_pairs(keys) if a.partition(":")[0] != b.partition(":")[0]]
    test_ids_caption = sorted({pid for key in shared_captions for pid, _ in test.caption_groups[key]})
    test_ids_image = sorted({pid for sha in shared_images for pid in test.image_posts[sha]})
    test_ids_near = sorted({pid for pair in near for tagged_sha in pair if tagged_sha.startswith("test:")
                            for pid in test.image_posts[tagged_sha.partition(":")[2]]})
    return {
        "shared_captions": len(shared_captions),
        "test_posts_with_train_caption": len(test_ids_caption),
        "shared_images": len(shared_images),
        "test_posts_with_train_image": len(test_ids_image),
        "near_duplicate_image_pairs": len(near),
        "test_posts_with_near_duplicate_train_image": len(test_ids_near),
        "example_ids": {"caption": test_ids_caption[:MAX_EXAMPLES], "image": test_ids_image[:MAX_EXAMPLES],
                        "near_image": test_ids_near[:MAX_EXAMPLES]},
    }


def _shift(train: _FileFacts, test: _FileFacts) -> dict[str, Any]:
    train_mean = float(np.mean(train.words)) if train.words else 0.0
    test_mean = float(np.mean(test.words)) if test.words else 0.0
    return {
        "train_mean_words": round(train_mean, 2),
        "test_mean_words": round(test_mean, 2),
        "test_to_train_ratio": round(test_mean / train_mean, 3) if train_mean else None,
        "train_median_words": float(np.median(train.words)) if train.words else None,
        "test_median_words": float(np.median(test.words)) if test.words else None,
    }


@dataclass
class InspectRequest:
    data: Path
    images: Path | None
    test: Path | None = None
    test_images: Path | None = None


def inspect_data(
    request: InspectRequest, cfg: DataConfig, progress: Callable[[], None] | None = None
) -> dict[str, Any]:
    """The full audit of a data file, and of a test file against it when one is given."""
    train = scan_file(request.data, request.images, cfg, cfg.labels, progress)
    report = summarize(request.data, request.images, train)
    if request.test is not None:
        test = scan_file(request.test, request.test_images or request.images, cfg, cfg.labels, progress)
        report["test"] = summarize(request.test, request.test_images, test)
        report["test"]["shift"] = _shift(train, test)
        report["test"]["leakage"] = _leakage(train, test)
    return report
