"""Hostile images folders: links out of the folder, FIFOs, devices, sockets, huge files, control characters.

Each post is a named fault (unsafe_path or unreadable_image) and nothing blocks: every call that could
hang runs under a deadline.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from mmtune.config import ChatConfig, ColumnsConfig, DataConfig, ImageConfig
from mmtune.data.checks import load_posts
from mmtune.data.folds import file_digest
from mmtune.data.images import ImageError, load_image, prepare_image, probe_image
from mmtune.errors import InputError
from mmtune.generative.chat_data import ReadRequest, read_rows
from tests.hostile.conftest import run_mmtune
from tests.hostile.deadline import within


def picture(path: Path, size: tuple[int, int] = (16, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 30, 30)).save(path)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    images = tmp_path / "images"
    picture(images / "ok.jpg")
    return images


def write_posts(path: Path, names: dict[str, str]) -> Path:
    posts = {pid: {"image": name, "caption": f"bài {pid}", "label": "a" if int(pid) % 2 else "b"}
             for pid, name in names.items()}
    path.write_text(json.dumps(posts), encoding="utf-8")
    return path


def faults_of(path: Path, images: Path, **data: Any) -> dict[str, tuple[str, str]]:
    loaded = within(30, lambda: load_posts(path, images, DataConfig(**data)))
    return {f.id: (f.kind, f.detail) for f in loaded.faults}


# ---- links ---------------------------------------------------------------------------------------------------


def test_links_out_of_the_folder_are_unsafe_and_links_inside_are_kept(tmp_path, folder):
    outside = picture(tmp_path / "secret.png")
    picture(tmp_path / "secret" / "x.png")
    picture(tmp_path / "elsewhere" / "deep.png")
    (folder / "s.png").symlink_to(outside)  # absolute target
    (folder / "r.png").symlink_to("../secret/x.png")  # relative target
    (folder / "sub").symlink_to(tmp_path / "elsewhere", target_is_directory=True)  # a folder link
    (folder / "in.jpg").symlink_to("ok.jpg")
    (folder / "loop.jpg").symlink_to("loop.jpg")
    data = write_posts(tmp_path / "d.json", {"1": "s.png", "2": "r.png", "3": "sub/deep.png", "4": "in.jpg",
                                             "5": "ok.jpg", "6": "loop.jpg"})
    loaded = within(30, lambda: load_posts(data, folder, DataConfig()))
    faults = {f.id: (f.kind, f.detail) for f in loaded.faults}
    for pid, name in (("1", "s.png"), ("2", "r.png"), ("3", "sub/deep.png")):
        assert faults[pid] == ("unsafe_path", f"'{name}' is a link to a file outside the images folder; refused")
    assert faults["6"][0] == "unreadable_image"
    assert loaded.skipped == {"1": "unsafe_path", "2": "unsafe_path", "3": "unsafe_path", "6": "unreadable_image"}
    # What is kept opens the real file inside the folder, not the link a second time.
    kept = {p.id: p.images for p in loaded.posts}
    assert kept == {"4": (folder.resolve() / "ok.jpg",), "5": (folder.resolve() / "ok.jpg",)}


def test_an_images_folder_that_is_itself_a_link_is_fine(tmp_path, folder):
    (tmp_path / "alias").symlink_to(folder, target_is_directory=True)
    data = write_posts(tmp_path / "d.json", {"1": "ok.jpg"})
    assert [p.id for p in load_posts(data, tmp_path / "alias", DataConfig()).posts] == ["1"]


def test_a_link_to_dev_zero_is_refused_before_it_is_read(tmp_path, folder):
    (folder / "z.jpg").symlink_to("/dev/zero")
    data = write_posts(tmp_path / "d.json", {"1": "z.jpg"})
    assert faults_of(data, folder)["1"][0] == "unsafe_path"


# ---- files that are not files --------------------------------------------------------------------------------


def test_a_fifo_is_unreadable_and_never_blocks(tmp_path, folder):
    os.mkfifo(folder / "f.jpg")
    data = write_posts(tmp_path / "d.json", {"1": "f.jpg", "2": "ok.jpg"})
    assert faults_of(data, folder)["1"] == ("unreadable_image", "'f.jpg': not a regular file (a FIFO)")


def test_a_socket_and_a_folder_named_like_images_are_unreadable(tmp_path, folder):
    (folder / "dir.jpg").mkdir()
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(folder / "sock.jpg"))
        data = write_posts(tmp_path / "d.json", {"1": "dir.jpg", "2": "sock.jpg"})
        faults = faults_of(data, folder)
    finally:
        server.close()
    assert faults["1"] == ("unreadable_image", "'dir.jpg': not a regular file (a folder)")
    assert faults["2"] == ("unreadable_image", "'sock.jpg': not a regular file (a socket)")


def test_the_loaders_refuse_devices_and_fifos_themselves(tmp_path):
    # A post checked at load time can be swapped before training opens it: the loaders check again.
    os.mkfifo(tmp_path / "f.jpg")
    for path, kind in ((Path("/dev/zero"), "a device"), (tmp_path / "f.jpg", "a FIFO")):
        for load in (lambda p: load_image(p, 10_000), lambda p: probe_image(p, 10_000),
                     lambda p: prepare_image(p, ImageConfig(size=8))):
            with pytest.raises(ImageError, match=f"not a regular file \\({kind}\\)"):
                within(10, lambda load=load, path=path: load(path))
    assert within(10, lambda: file_digest(tmp_path / "f.jpg")) is None


def test_image_files_over_max_bytes_are_unreadable(tmp_path, folder):
    big = folder / "big.png"
    Image.effect_noise((64, 64), 80).save(big)  # noise: far larger than the flat ok.jpg
    size = big.stat().st_size
    assert size > 2 * (folder / "ok.jpg").stat().st_size
    data = write_posts(tmp_path / "d.json", {"1": "big.png", "2": "ok.jpg"})
    faults = faults_of(data, folder, image=ImageConfig(max_bytes=size - 1))
    assert faults["1"] == ("unreadable_image", f"'big.png': {size} bytes > data.image.max_bytes={size - 1}")
    assert "2" not in faults
    with pytest.raises(ImageError, match="data.image.max_bytes"):
        prepare_image(big, ImageConfig(size=8, max_bytes=size - 1))


def test_a_huge_sparse_file_is_refused_without_reading_it(tmp_path, folder):
    with (folder / "huge.jpg").open("wb") as handle:
        handle.truncate(ImageConfig().max_bytes + 1)  # sparse: no disk, but read() would fill memory
    data = write_posts(tmp_path / "d.json", {"1": "huge.jpg"})
    kind, detail = faults_of(data, folder)["1"]
    assert kind == "unreadable_image" and "> data.image.max_bytes=67108864" in detail


def test_max_bytes_is_a_documented_config_key(capsys):
    from mmtune.cli import main

    assert main(["config", "--schema"]) == 0
    assert "data.image.max_bytes" in capsys.readouterr().out


# ---- names ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["good\u0000.jpg", "good\n.jpg", "a\u001b[31m.jpg", "x\u007f.jpg"])
def test_control_characters_in_a_name_are_unsafe(tmp_path, folder, name):
    data = write_posts(tmp_path / "d.json", {"1": name, "2": "ok.jpg"})
    kind, detail = faults_of(data, folder)["1"]
    assert kind == "unsafe_path" and "contains a control character" in detail and "\n" not in detail


def test_nul_in_a_name_fails_one_line_with_on_bad_row_error(tmp_path, folder):
    data = write_posts(tmp_path / "d.json", {"1": "good\u0000.jpg"})
    with pytest.raises(InputError, match=r"d\.json: post '1' \(row 1\): unsafe_path: image name 'good\\x00\.jpg'"):
        load_posts(data, folder, DataConfig(on_bad_row="error"))


# ---- chat data -------------------------------------------------------------------------------------------------


def chat_row(image: str) -> str:
    return json.dumps({"messages": [{"role": "user", "content": "<image>mô tả"},
                                    {"role": "assistant", "content": "một bức ảnh"}], "images": [image]})


def test_chat_data_applies_the_same_image_rules(tmp_path, folder):
    picture(tmp_path / "secret.png")
    (folder / "s.png").symlink_to(tmp_path / "secret.png")
    os.mkfifo(folder / "f.jpg")
    path = tmp_path / "chat.jsonl"
    path.write_text("\n".join(chat_row(name) for name in ("s.png", "f.jpg", "a\u0000.jpg", "ok.jpg")) + "\n")
    request = ReadRequest(path, folder, ChatConfig(), ColumnsConfig())
    result = within(30, lambda: read_rows(request))
    assert dict(result.skipped) == {"unsafe_path": 2, "unreadable_image": 1}
    assert [row["images"] for row in result.rows] == [[str(folder.resolve() / "ok.jpg")]]
    with pytest.raises(InputError, match=r"chat\.jsonl line 1: '.*s\.png' is a link to a file outside"):
        read_rows(ReadRequest(path, folder, ChatConfig(), ColumnsConfig(), on_bad_row="error"))


def test_chat_data_names_a_missing_images_folder(tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text(chat_row("ok.jpg") + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"nowhere: the images folder of .*chat\.jsonl not found"):
        read_rows(ReadRequest(path, tmp_path / "nowhere", ChatConfig(), ColumnsConfig()))


def test_chat_data_without_a_folder_refuses_control_characters(tmp_path, folder):
    path = tmp_path / "chat.jsonl"
    path.write_text(chat_row(str(folder / "ok.jpg")) + "\n" + chat_row("a\u0000.jpg") + "\n")
    result = read_rows(ReadRequest(path, None, ChatConfig(), ColumnsConfig()))
    assert dict(result.skipped) == {"unsafe_path": 1} and len(result.rows) == 1


# ---- the CLI ---------------------------------------------------------------------------------------------------


def test_inspect_with_a_fifo_and_escaping_links_finishes_and_names_them(tmp_path, folder):
    os.mkfifo(folder / "f.jpg")
    picture(tmp_path / "secret.png")
    (folder / "s.png").symlink_to(tmp_path / "secret.png")
    (folder / "z.jpg").symlink_to("/dev/zero")
    data = write_posts(tmp_path / "d.json", {"1": "f.jpg", "2": "s.png", "3": "z.jpg", "4": "ok.jpg"})
    out = tmp_path / "audit.json"
    result = run_mmtune("inspect", data, "--images", folder, "--json", out, timeout=90)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["fault_counts"] == {"unreadable_image": 1, "unsafe_path": 2}
    assert report["posts"] == 4 and report["bad_posts"] == 3
