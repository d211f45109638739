import json
import logging

import pytest

from mmtune.config import DataConfig
from mmtune.data import checks
from mmtune.data.checks import BAD_BY_DEFAULT, FAULT_KINDS, UnsafePath, load_posts, resolve_image_path
from mmtune.errors import InputError
from tests.conftest import SARCASM


def kinds_by_id(faults):
    found = {}
    for fault in faults:
        found.setdefault(fault.id, set()).add(fault.kind)
    return found


def test_fixture_covers_every_fault_kind(faulty_vimmsd):
    assert set().union(*faulty_vimmsd.expected.values()) == set(FAULT_KINDS)


def test_skip_mode_reports_every_fault_and_drops_only_bad_posts(faulty_vimmsd, caplog):
    cfg = DataConfig()
    with caplog.at_level(logging.WARNING):
        loaded = load_posts(faulty_vimmsd.json, faulty_vimmsd.images, cfg, labels=SARCASM)
    found = kinds_by_id(loaded.faults)
    for post_id, kinds in faulty_vimmsd.expected.items():
        assert kinds <= found.get(post_id, set()), (post_id, found.get(post_id))
    assert found.get("14") is None and "0" in found  # clean post; "0" only for the repeat
    kept = {p.id for p in loaded.posts}
    # The first "0" is kept, its repeat is skipped.
    assert kept == {"0", "5", "6", "7", "8", "9", "10", "14"}
    assert set(loaded.skipped.values()) == {"missing_image", "unreadable_image", "unknown_label", "unsafe_path",
                                            "bad_label", "duplicate_id"}
    assert loaded.n_rows == 14 and len(loaded.posts) + len(loaded.skipped) == loaded.n_rows
    assert "skipped 6 of 14 posts" in caplog.text and "ids 2, 3, 11, 12, 13" in caplog.text


def test_kept_posts_resolve_images_inside_the_folder(faulty_vimmsd):
    loaded = load_posts(faulty_vimmsd.json, faulty_vimmsd.images, DataConfig(), labels=SARCASM)
    post = next(p for p in loaded.posts if p.id == "10")
    assert post.images == (faulty_vimmsd.images / "ok.jpg", faulty_vimmsd.images / "ok2.jpg")
    assert post.label == "multi-sarcasm"


@pytest.mark.parametrize(
    ("post", "kind"),
    [
        ({"image": "missing.jpg", "caption": "x", "label": "not-sarcasm"}, "missing_image"),
        ({"image": "broken.jpg", "caption": "x", "label": "not-sarcasm"}, "unreadable_image"),
        ({"image": "ok.jpg", "caption": "x", "label": "nope"}, "unknown_label"),
        ({"image": "../secret.jpg", "caption": "x", "label": "not-sarcasm"}, "unsafe_path"),
        ({"image": "/etc/passwd", "caption": "x", "label": "not-sarcasm"}, "unsafe_path"),
        ({"caption": "x", "label": "not-sarcasm"}, "missing_image"),
    ],
)
def test_error_mode_stops_with_file_id_and_kind(faulty_vimmsd, post, kind):
    path = faulty_vimmsd.root / "one.json"
    data = {"1": {"image": "ok.jpg", "caption": "tốt", "label": "not-sarcasm"}, "4": post}
    path.write_text(json.dumps(data), encoding="utf-8")
    cfg = DataConfig(on_bad_row="error")
    with pytest.raises(InputError, match=rf"one\.json: post '4' \(row 2\): {kind}: ") as info:
        load_posts(path, faulty_vimmsd.images, cfg, labels=SARCASM)
    assert "\n" not in str(info.value)


def test_error_mode_names_a_duplicate_id(faulty_vimmsd):
    path = faulty_vimmsd.root / "dup.jsonl"
    path.write_text('{"id": "a", "image": "ok.jpg", "caption": "x"}\n{"id": "a", "image": "ok.jpg", "caption": "y"}\n')
    with pytest.raises(InputError, match=r"post 'a' \(row 2\): duplicate_id: row 2 repeats the id of row 1"):
        load_posts(path, faulty_vimmsd.images, DataConfig(on_bad_row="error"))


@pytest.mark.parametrize("kind", sorted(set(FAULT_KINDS) - BAD_BY_DEFAULT))
def test_reported_kinds_keep_the_post_in_both_modes(faulty_vimmsd, kind):
    post_id = next(i for i, kinds in faulty_vimmsd.expected.items() if kind in kinds)
    source = json.loads(faulty_vimmsd.json.read_text(encoding="utf-8"))
    path = faulty_vimmsd.root / "single.json"
    path.write_text(json.dumps({post_id: source[post_id]}), encoding="utf-8")
    for mode in ("skip", "error"):
        loaded = load_posts(path, faulty_vimmsd.images, DataConfig(on_bad_row=mode), labels=SARCASM)
        assert [p.id for p in loaded.posts] == [post_id]
        assert kind in {f.kind for f in loaded.faults}
    # ... unless the user makes the kind bad.
    strict = DataConfig(on_bad_row="error", bad_faults=[kind])
    with pytest.raises(InputError, match=rf"post '{post_id}' \(row 1\): {kind}"):
        load_posts(path, faulty_vimmsd.images, strict, labels=SARCASM)
    loaded = load_posts(path, faulty_vimmsd.images, DataConfig(bad_faults=[kind]), labels=SARCASM)
    assert loaded.posts == [] and loaded.skipped == {post_id: kind}


def test_unknown_bad_fault_kind_is_a_config_error(faulty_vimmsd):
    with pytest.raises(InputError, match="data.bad_faults: unknown fault kind 'blurry'"):
        load_posts(faulty_vimmsd.json, faulty_vimmsd.images, DataConfig(bad_faults=["blurry"]))


def test_unsafe_paths_are_never_opened(faulty_vimmsd, monkeypatch):
    opened = []
    real_probe = checks.probe_image

    def spy(path, **kwargs):
        opened.append(str(path))
        return real_probe(path, **kwargs)

    monkeypatch.setattr(checks, "probe_image", spy)
    load_posts(faulty_vimmsd.json, faulty_vimmsd.images, DataConfig(), labels=SARCASM)
    assert opened and not any("passwd" in p for p in opened)


@pytest.mark.parametrize(
    ("name", "safe"),
    [("a.jpg", True), ("sub/a.jpg", True), ("sub/../a.jpg", True), ("./a.jpg", True),
     ("../a.jpg", False), ("sub/../../a.jpg", False), ("/etc/passwd", False), ("..\\..\\win.ini", False),
     ("C:/x.jpg", False)],
)
def test_resolve_image_path(tmp_path, name, safe):
    if safe:
        assert resolve_image_path(tmp_path, name) == tmp_path / name.replace("sub/../", "").replace("./", "")
    else:
        with pytest.raises(UnsafePath, match="escapes the images folder"):
            resolve_image_path(tmp_path, name)


def test_training_files_need_a_label(faulty_vimmsd):
    path = faulty_vimmsd.root / "nolabel.json"
    path.write_text(json.dumps({"1": {"image": "ok.jpg", "caption": "x", "label": None}}))
    assert len(load_posts(path, faulty_vimmsd.images, DataConfig()).posts) == 1
    loaded = load_posts(path, faulty_vimmsd.images, DataConfig(), require_label=True)
    assert loaded.skipped == {"1": "unknown_label"}


def test_large_files_probe_in_worker_processes_with_the_same_results(faulty_vimmsd):
    # Past the first chunk of posts the image checks run in a process pool: same faults, same order.
    path = faulty_vimmsd.root / "big.jsonl"
    names = ["ok.jpg", "png.jpg", "pano.jpg", "missing.jpg", "broken.jpg", "../x.jpg"]
    rows = [{"id": str(i), "image": names[i % len(names)], "caption": f"bài {i}"} for i in range(1300)]
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    loaded = load_posts(path, faulty_vimmsd.images, DataConfig())
    assert [p.id for p in loaded.posts] == [r["id"] for r in rows if int(r["id"]) % 6 < 3]
    kinds = [f.kind for f in loaded.faults if f.kind not in ("format_mismatch", "extreme_aspect")]
    expected = [("missing_image", "unreadable_image", "unsafe_path")[i % 6 - 3] for i in range(1300) if i % 6 >= 3]
    assert kinds == expected
    assert sum(f.kind == "format_mismatch" for f in loaded.faults) == len(range(1, 1300, 6))
