"""cv.pseudo_label: the test posts a fold's second round trains on, with the labels its first round gave them.

Leakage-free by construction (recipes/cv runs it): fold K's first-round model trained on every fold but K, so the
labels it gives the test posts carry nothing of fold K's gold labels; fold K's second round trains on its own
training posts plus those test posts, and is validated on fold K as before. A test post that is a near-copy of one
of fold K's validation posts (the same normalized caption or an identical image: the keys cv.group_by keeps in one
fold) is never taken: training on it would be training on that validation post.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mmtune.config import PseudoLabelConfig
from mmtune.data.post import Post
from mmtune.data.text import caption_key
from mmtune.data.textfile import file_digest
from mmtune.errors import InputError
from mmtune.evaluation.predictions import Predictions
from mmtune.outputs import atomic_open, write_text_atomic

POSTS_FILE, COUNTS_FILE = "pseudo_labels.csv", "pseudo_labels.json"


@dataclass
class PseudoLabels:
    """What one fold's second round adds: `posts` (test posts, label = the first round's top class), the
    confidence of each, and the counts that explain the choice."""

    labels: list[str]
    posts: list[Post] = field(default_factory=list)
    confidence: list[float] = field(default_factory=list)
    test_posts: int = 0
    training_posts: int = 0
    near_copies: int = 0  # test posts left out as near-copies of a validation post
    confident: int = 0  # the others at or above the threshold
    cap: int = 0  # max_fraction x training_posts

    def per_class(self) -> dict[str, int]:
        counts = Counter(post.label for post in self.posts)
        return {label: counts.get(label, 0) for label in self.labels}

    def counts(self) -> dict[str, Any]:
        return {"test_posts": self.test_posts, "training_posts": self.training_posts, "near_copies": self.near_copies,
                "confident": self.confident, "cap": self.cap, "added": len(self.posts), "per_class": self.per_class()}


Digest = Callable[[Path], str | None]  # an image file -> its content hash (None: unreadable)


def content_keys(post: Post, group_by: Sequence[str], digest: Digest = file_digest) -> set[tuple[str, str]]:
    """The keys that make two posts near-copies (as data.folds groups them)."""
    keys: set[tuple[str, str]] = set()
    if "caption" in group_by and (key := caption_key(post.text)):
        keys.add(("caption", key))
    if "image" in group_by:
        keys |= {("image", value) for value in map(digest, post.images) if value}
    return keys


def select(predictions: Predictions, test_posts: Sequence[Post], validation: Sequence[Post], training_posts: int,
           settings: PseudoLabelConfig, group_by: Sequence[str], digest: Digest = file_digest) -> PseudoLabels:
    """The confident test posts of one fold, most confident first (ties by id), at most the cap. `digest`: the
    image hash (a cv passes a memoized one: every fold hashes the same test images)."""
    by_id = {post.id: post for post in test_posts}
    unknown = [pid for pid in predictions.ids if pid not in by_id]
    if unknown or len(predictions.ids) != len(by_id):
        raise InputError(f"{predictions.path}: its ids are not the posts of data.test (e.g. "
                         f"'{(unknown or sorted(set(by_id) - set(predictions.ids)))[0]}'); delete that run folder "
                         "to train the first round again")
    held_out = set().union(*(content_keys(post, group_by, digest) for post in validation))
    top = predictions.probs.argmax(axis=1)
    confidence = predictions.probs.max(axis=1)
    chosen = PseudoLabels(predictions.labels, test_posts=len(by_id), training_posts=training_posts,
                          cap=math.floor(settings.max_fraction * training_posts))
    candidates = []
    for row, pid in enumerate(predictions.ids):
        if content_keys(by_id[pid], group_by, digest) & held_out:
            chosen.near_copies += 1
        elif confidence[row] >= settings.threshold:
            candidates.append((-float(confidence[row]), pid, row))
    chosen.confident = len(candidates)
    for negative, pid, row in sorted(candidates)[:chosen.cap]:
        chosen.posts.append(replace(by_id[pid], label=predictions.labels[int(top[row])]))
        chosen.confidence.append(-negative)
    return chosen


def write(run_dir: Path, chosen: PseudoLabels, source: Path, settings: PseudoLabelConfig) -> None:
    """run_dir/pseudo_labels.csv (id,label,confidence: the posts this run trains on besides its training posts)
    and run_dir/pseudo_labels.json (the counts and where the labels came from: `source`, in the cv folder)."""
    with atomic_open(run_dir / POSTS_FILE, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "label", "confidence"])
        writer.writerows((post.id, post.label, f"{value:.6f}") for post, value in zip(chosen.posts, chosen.confidence))
    record = {"threshold": settings.threshold, "max_fraction": settings.max_fraction, "labels_from": str(source),
              **chosen.counts()}
    write_text_atomic(run_dir / COUNTS_FILE, json.dumps(record, indent=1))


def read_counts(run_dir: Path) -> dict[str, Any] | None:
    """A fold's pseudo_labels.json, or None when that fold has none (yet)."""
    path = run_dir / COUNTS_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: damaged ({exc})") from None


def describe(fold: int, chosen: PseudoLabels, settings: PseudoLabelConfig) -> str:
    """One log line: how many test posts fold `fold` adds, per class, and why not more."""
    classes = ", ".join(f"{label} {n}" for label, n in chosen.per_class().items())
    return (f"fold {fold}: pseudo-labels: {len(chosen.posts)} of {chosen.test_posts} test posts added ({classes}); "
            f"{chosen.confident} at probability >= {settings.threshold:g}, at most {chosen.cap} "
            f"(= {settings.max_fraction:g} x {chosen.training_posts} training posts), "
            f"{chosen.near_copies} left out as near-copies of validation posts")


def class_totals(per_fold: dict[int, dict[str, Any]]) -> dict[str, int]:
    totals: Counter[str] = Counter()
    for record in per_fold.values():
        totals.update(record["per_class"])
    return dict(totals)
