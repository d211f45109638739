"""Rendering the planned images and writing the ViMMSD-format JSON files, image folders and answer key."""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mmtune.demo.scenes import SCENES, _meme_bar
from mmtune.demo.specs import _generate_specs, _ImageSpec, _PostSpec

MEME_BAR_RATE = 0.55


@dataclass(frozen=True)
class DemoData:
    """Where `make_demo_data` wrote things; `test_gold` is the (id,label) answer key of `test`."""

    root: Path
    train: Path
    train_images: Path
    test: Path
    test_images: Path
    test_gold: Path


@functools.cache
def _noise_bank(height: int, width: int) -> np.ndarray:
    # Cropping one fixed noise field is ~7x faster than drawing fresh Gaussian noise per image.
    bank = np.random.default_rng(12345).standard_normal((256, 1024, 3)) * 3
    reps = (-(-height // 256) + 1, -(-width // 1024) + 1, 1)
    return np.tile(np.rint(bank).astype(np.int16), reps)


def _add_noise(img: Image.Image, rng: random.Random) -> Image.Image:
    w, h = img.size
    bank = _noise_bank(h, w)
    oy, ox = rng.randrange(bank.shape[0] - h), rng.randrange(bank.shape[1] - w)
    noisy = np.asarray(img, dtype=np.int16) + bank[oy : oy + h, ox : ox + w] * rng.randint(1, 3)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _render(spec: _ImageSpec) -> bytes:
    rng = random.Random(spec.seed)
    img = Image.new("RGB", (spec.width, spec.height))
    d = ImageDraw.Draw(img)
    SCENES[(spec.kind, spec.scene)](d, rng, (0, 0, spec.width, spec.height))
    if rng.random() < MEME_BAR_RATE:
        _meme_bar(d, rng, spec.width, spec.height)
    img = _add_noise(img, rng)
    if spec.resize_to is not None:
        img = img.resize(spec.resize_to, Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    if spec.fmt == "PNG":
        img.save(buf, "PNG")
    else:
        img.save(buf, "JPEG", quality=spec.quality)
    data = buf.getvalue()
    # Cutting inside the entropy-coded scan keeps the header readable but the pixels undecodable.
    return data[: len(data) // 2] if spec.truncate else data


def _write_split(posts: list[_PostSpec], json_path: Path, image_dir: Path, with_labels: bool,
                 cache: dict[_ImageSpec, tuple[bytes, str]]) -> None:
    image_dir.mkdir(parents=True, exist_ok=True)
    records: dict[str, dict[str, object]] = {}
    for post in posts:
        names = []
        for spec in post.images:
            if spec not in cache:
                data = _render(spec)
                cache[spec] = (data, hashlib.sha256(data).hexdigest() + ".jpg")
            data, name = cache[spec]
            names.append(name)
            path = image_dir / name
            if post.missing:
                path.unlink(missing_ok=True)  # a previous fault-free run may have written it
            else:
                path.write_bytes(data)
        records[post.id] = {"image": names if post.image_as_list else names[0], "caption": post.caption,
                            "label": post.label if with_labels else None}
    json_path.write_bytes(json.dumps(records, ensure_ascii=False, indent=2).encode("utf-8"))


def make_demo_data(root: Path, n_train: int = 2000, n_test: int = 400, seed: int = 0, image_size: int = 128,
                   inject_faults: bool = True) -> DemoData:
    """Write a ViMMSD-format train file, an unlabelled public test file, their images and an answer key."""
    root = Path(root)
    demo = DemoData(root=root, train=root / "vimmsd-train.json", train_images=root / "train-images",
                    test=root / "vimmsd-public-test.json", test_images=root / "test-images",
                    test_gold=root / "public-test-gold.csv")
    specs = _generate_specs(n_train, n_test, seed, image_size, inject_faults)
    root.mkdir(parents=True, exist_ok=True)
    cache: dict[_ImageSpec, tuple[bytes, str]] = {}
    _write_split(specs.train, demo.train, demo.train_images, True, cache)
    _write_split(specs.test, demo.test, demo.test_images, False, cache)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "label"])
    writer.writerows([p.id, p.label] for p in specs.test)
    demo.test_gold.write_bytes(buf.getvalue().encode("utf-8"))
    return demo
