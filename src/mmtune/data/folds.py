"""Cross-validation folds: stratified by label, grouped so near-copies never straddle folds.

Posts that share a normalized caption (`caption_key`) or an identical image file (content hash) are
joined into one group, transitively. The public test of DSC UIT 2024 leaked through such copies;
a fold split that separates them gives optimistic validation scores.
Folds are data: `folds.csv` (id,fold) is written once and read by every later run.
"""

from __future__ import annotations

import csv
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from mmtune.data.csvfile import CsvRows
from mmtune.data.post import Post
from mmtune.data.text import caption_key
from mmtune.data.textfile import file_digest
from mmtune.errors import InputError
from mmtune.outputs import atomic_open

log = logging.getLogger(__name__)


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def group_ids(posts: Sequence[Post], group_by: Sequence[str] = ("caption", "image")) -> np.ndarray:
    """One group number per post; posts linked by a shared key end in the same group."""
    union = _UnionFind(len(posts))
    first_with_key: dict[tuple[str, str], int] = {}
    for index, post in enumerate(posts):
        keys: list[tuple[str, str]] = []
        if "caption" in group_by:
            key = caption_key(post.text)
            # Empty captions say nothing about each other; grouping them would merge unrelated posts.
            if key:
                keys.append(("caption", key))
        if "image" in group_by:
            keys += [("image", digest) for digest in map(file_digest, post.images) if digest]
        for key in keys:
            union.union(first_with_key.setdefault(key, index), index)
    return np.array([union.find(i) for i in range(len(posts))])


def make_folds(
    posts: Sequence[Post], k: int, seed: int, group_by: Sequence[str] = ("caption", "image")
) -> dict[str, int]:
    """Assign each labelled post to one of k folds (0..k-1), deterministically for a seed."""
    if k < 2:
        raise InputError(f"cv.folds must be at least 2, got {k}")
    unlabelled = [p.id for p in posts if p.label is None]
    if unlabelled:
        raise InputError(f"folds need labelled posts; {len(unlabelled)} have no label (e.g. id {unlabelled[0]})")
    groups = group_ids(posts, group_by)
    if len(set(groups.tolist())) < k:
        raise InputError(f"cv.folds={k} but the data has only {len(set(groups.tolist()))} caption/image groups")
    labels = np.array([p.label for p in posts])
    _warn_about_rare_labels(labels, groups, k)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    fold_of = np.empty(len(posts), dtype=int)
    with warnings.catch_warnings():
        # Said once, in our words, by _warn_about_rare_labels.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        for fold, (_, val_index) in enumerate(splitter.split(np.zeros(len(posts)), labels, groups)):
            fold_of[val_index] = fold
    _spread_rare_classes(fold_of, labels, groups, k)
    return {post.id: int(fold) for post, fold in zip(posts, fold_of)}


def _warn_about_rare_labels(labels: np.ndarray, groups: np.ndarray, k: int) -> None:
    for label in np.unique(labels):
        n_groups = len(np.unique(groups[labels == label]))
        if n_groups < k:
            log.warning(f"label '{label}' has only {n_groups} caption/image groups: it cannot appear in all {k} folds")


def _spread_rare_classes(fold_of: np.ndarray, labels: np.ndarray, groups: np.ndarray, k: int) -> None:
    """Move whole groups so that every class with at least k groups appears in every fold.

    StratifiedGroupKFold balances proportions greedily and can leave a rare class (77 text-sarcasm
    posts in ViMMSD) out of a fold; a fold without a class cannot score that class's F1.
    """
    for label in np.unique(labels):
        label_groups = np.unique(groups[labels == label])
        if len(label_groups) < k:
            continue
        for _ in range(k):
            counts = np.bincount(fold_of[labels == label], minlength=k)
            empty = np.flatnonzero(counts == 0)
            if not len(empty):
                break
            # The fold with the most groups of this label gives one (it has at least two, by pigeonhole),
            # its smallest, to disturb the rest the least.
            groups_per_fold = [np.unique(groups[(labels == label) & (fold_of == f)]) for f in range(k)]
            donor_groups = max(groups_per_fold, key=len)
            sizes = [(np.sum(groups == g), g) for g in donor_groups]
            fold_of[groups == min(sizes)[1]] = int(empty[0])


def write_folds(folds: dict[str, int], path: str | Path) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "fold"])
        writer.writerows(folds.items())


def read_folds(path: str | Path, ids: Sequence[str] | None = None) -> dict[str, int]:
    """Read folds.csv; with `ids`, every id must have exactly one fold."""
    path = Path(path)
    folds: dict[str, int] = {}
    rows = CsvRows(path, what="folds file")
    header = rows.header()
    if not {"id", "fold"} <= set(header):
        raise InputError(f"{path}: expected columns id,fold")
    id_at, fold_at = header.index("id"), header.index("fold")
    for line, fields in rows.records():
        post_id, fold_text = fields[id_at], fields[fold_at]
        fold = _fold_number(fold_text)
        if fold is None:
            raise InputError(f"{path}:{line}: fold must be an integer >= 0, got {fold_text!r}")
        if post_id in folds:
            raise InputError(f"{path}:{line}: id '{post_id}' appears twice")
        folds[post_id] = fold
    if ids is not None:
        missing = [i for i in ids if i not in folds]
        if missing:
            raise InputError(f"{path}: {len(missing)} posts have no fold (e.g. id '{missing[0]}')")
    return folds


def _fold_number(text: str) -> int | None:
    # Why not int() alone: it also takes "²"-like digits and " 1_0 ", which no folds file means.
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() else None
