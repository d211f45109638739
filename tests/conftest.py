"""Shared fixtures: small data sets written in tmp folders, with faults placed on purpose."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub, which reads it once: tests never touch the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# Tiny models run fastest on one thread, and pytest-xdist already runs one worker per core.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import io  # noqa: E402
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

LONG_CAPTION = " ".join(["chữ"] * 300)


def write_image(path: Path, size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (200, 30, 30),
                fmt: str = "JPEG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)
    return path


def write_truncated_jpeg(path: Path) -> Path:
    buffer = io.BytesIO()
    noise = Image.effect_noise((256, 256), 60).convert("RGB")
    noise.save(buffer, format="JPEG", quality=95)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


@dataclass
class FaultyData:
    root: Path
    json: Path
    images: Path
    # id -> the fault kinds the checks must report for it
    expected: dict[str, set[str]]


@pytest.fixture
def faulty_vimmsd(tmp_path: Path) -> FaultyData:
    """A ViMMSD JSON dict with gaps in the ids and one post for each fault kind."""
    images = tmp_path / "images"
    write_image(images / "ok.jpg", color=(10, 200, 10))
    write_image(images / "ok2.jpg", color=(10, 10, 200))
    write_image(images / "png.jpg", fmt="PNG", color=(200, 200, 10))
    write_image(images / "pano.jpg", size=(400, 100))
    write_truncated_jpeg(images / "broken.jpg")
    posts = [
        ("0", {"image": "ok.jpg", "caption": "Trời đẹp quá", "label": "not-sarcasm"}),
        ("2", {"image": "missing.jpg", "caption": "ảnh đâu rồi", "label": "multi-sarcasm"}),
        ("3", {"image": "broken.jpg", "caption": "ảnh hỏng", "label": "not-sarcasm"}),
        ("5", {"image": "png.jpg", "caption": "ảnh png", "label": "image-sarcasm"}),
        ("6", {"image": "pano.jpg", "caption": "toàn cảnh \ud83d", "label": "not-sarcasm"}),  # half an emoji
        ("7", {"image": "ok.jpg", "caption": "   ", "label": "not-sarcasm"}),
        ("8", {"image": "ok.jpg", "caption": "😂😂 🙃", "label": "text-sarcasm"}),
        ("9", {"image": "ok.jpg", "caption": LONG_CAPTION, "label": "not-sarcasm"}),
        ("10", {"image": ["ok.jpg", "ok2.jpg"], "caption": "hai ảnh", "label": "multi-sarcasm"}),
        ("11", {"image": "ok2.jpg", "caption": "nhãn lạ", "label": "very-sarcasm"}),
        ("12", {"image": "../../etc/passwd", "caption": "thoát thư mục", "label": "not-sarcasm"}),
        ("13", {"image": "ok2.jpg", "caption": "nhãn là số", "label": 3}),
        ("14", {"image": "ok2.jpg", "caption": "Trời đẹp quá!!", "label": "multi-sarcasm"}),
    ]
    # ASCII escapes: post 6's lone surrogate has no UTF-8 form.
    body = ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in posts)
    # A repeated key: json.load would keep only the last; the reader must report it.
    body += ',\n"0": ' + json.dumps({"image": "ok2.jpg", "caption": "trùng id", "label": "not-sarcasm"})
    path = tmp_path / "train.json"
    path.write_text("{\n" + body + "\n}", encoding="utf-8")
    expected = {
        "2": {"missing_image"}, "3": {"unreadable_image"}, "5": {"format_mismatch"},
        "6": {"extreme_aspect", "invalid_unicode"},
        "7": {"empty_text"}, "8": {"emoji_only_text"}, "9": {"long_text"}, "10": {"multiple_images"},
        "11": {"unknown_label"}, "12": {"unsafe_path"}, "13": {"bad_label"}, "0": {"duplicate_id"},
    }
    return FaultyData(root=tmp_path, json=path, images=images, expected=expected)


SARCASM = ["image-sarcasm", "multi-sarcasm", "not-sarcasm", "text-sarcasm"]


@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The folder of a tiny VLM `family` checkpoint (seed 0), written on first use."""
    from mmtune.testing.tiny import make_tiny  # loads transformers: only for the sessions that use it

    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            name = "vlm_" + family.replace("-", "_").replace(".", "_")
            built[family] = make_tiny(family, tmp_path_factory.mktemp(name))
        return built[family]

    return get
