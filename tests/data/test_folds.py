from collections import Counter

import numpy as np
import pytest

from mmtune.data.folds import group_ids, make_folds, read_folds, write_folds
from mmtune.data.post import Post
from mmtune.data.text import caption_key
from mmtune.errors import InputError
from tests.conftest import write_image

LABELS = ["not-sarcasm"] * 60 + ["multi-sarcasm"] * 40 + ["image-sarcasm"] * 12 + ["text-sarcasm"] * 6


@pytest.fixture
def posts(tmp_path):
    """118 posts: duplicate captions in groups of 3, and rare-class posts sharing image files."""
    rng = np.random.default_rng(0)
    images = [write_image(tmp_path / f"{i}.jpg", color=tuple(int(c) for c in rng.integers(0, 255, 3)))
              for i in range(100)]
    result = []
    for i, label in enumerate(LABELS):
        text = f"Bài đăng số {i // 3} nè!" if i < 45 else f"bài viết riêng {i}"
        if i % 9 == 0:
            text = text.upper() + " 😂"  # the same caption key as its group, written differently
        image = images[i if i < 100 else i - 50]  # posts 100..117 reuse the files of posts 50..67
        result.append(Post(id=str(i * 2), images=(image,), text=text, label=label))
    return result


def test_no_caption_or_image_group_is_split(posts):
    folds = make_folds(posts, k=5, seed=1)
    assert set(folds) == {p.id for p in posts}
    by_caption, by_image = {}, {}
    for post in posts:
        by_caption.setdefault(caption_key(post.text), set()).add(folds[post.id])
        by_image.setdefault(post.images[0], set()).add(folds[post.id])
    assert all(len(f) == 1 for f in by_caption.values())
    assert all(len(f) == 1 for f in by_image.values())


def test_every_class_in_every_fold_and_stratified(posts):
    folds = make_folds(posts, k=5, seed=3)
    counts = Counter((folds[p.id], p.label) for p in posts)
    for label, total in Counter(LABELS).items():
        per_fold = [counts[(f, label)] for f in range(5)]
        assert min(per_fold) >= 1, (label, per_fold)
        assert max(per_fold) - min(per_fold) <= max(3, total // 4), (label, per_fold)
    sizes = Counter(folds.values())
    assert max(sizes.values()) - min(sizes.values()) <= 8


def test_folds_are_deterministic_by_seed(posts):
    assert make_folds(posts, 5, seed=11) == make_folds(posts, 5, seed=11)
    assert make_folds(posts, 5, seed=11) != make_folds(posts, 5, seed=12)


def test_groups_link_caption_and_image_transitively(tmp_path):
    a, b = write_image(tmp_path / "a.jpg"), write_image(tmp_path / "b.jpg", color=(1, 2, 3))
    same_bytes = tmp_path / "copy.jpg"
    same_bytes.write_bytes(a.read_bytes())
    posts = [
        Post("1", (a,), "xin chào", label="x"),
        Post("2", (b,), "Xin chào!!", label="y"),  # same caption as 1
        Post("3", (same_bytes,), "khác hẳn", label="x"),  # same image bytes as 1, other name
        Post("4", (b,), "", label="x"),  # same image as 2
        Post("5", (tmp_path / "none.jpg",), "", label="y"),  # empty caption: not grouped with 4
    ]
    groups = group_ids(posts)
    assert len({groups[0], groups[1], groups[2], groups[3]}) == 1
    assert groups[4] != groups[0]
    assert len(set(group_ids(posts, group_by=["caption"]))) == 4


def test_folds_file_round_trip_and_errors(tmp_path, posts):
    folds = make_folds(posts, 4, seed=0)
    path = tmp_path / "out" / "folds.csv"
    write_folds(folds, path)
    assert path.read_text().splitlines()[0] == "id,fold"
    assert read_folds(path, ids=[p.id for p in posts]) == folds
    with pytest.raises(InputError, match="posts have no fold"):
        read_folds(path, ids=["not-there"])
    bad = tmp_path / "bad.csv"
    bad.write_text("id,fold\n1,x\n")
    with pytest.raises(InputError, match=r"bad\.csv:2: fold must be an integer"):
        read_folds(bad)
    bad.write_text("id,fold\n1,0\n1,1\n")
    with pytest.raises(InputError, match="appears twice"):
        read_folds(bad)


def test_bad_fold_requests(posts):
    with pytest.raises(InputError, match="cv.folds must be at least 2"):
        make_folds(posts, 1, seed=0)
    with pytest.raises(InputError, match="have no label"):
        make_folds([Post("1", (), "x")] * 3, 2, seed=0)
