"""The image path the kinds share: one seeding rule, the three fits, augmentation only in training, the flip."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from mmtune.config import AugmentConfig, ImageConfig
from mmtune.models.image_pipeline import SEED_BOUND, ImagePipeline

AUGMENT = ImageConfig(size=32, augment=AugmentConfig(enabled=True, rotation=20.0, hflip=0.5))


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    pixels = np.random.default_rng(0).integers(0, 255, (48, 80, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).save(path)
    return path


def test_no_generator_outside_training_or_without_augmentation() -> None:
    assert ImagePipeline(AUGMENT).batch_rng(train=False) is None
    assert ImagePipeline(ImageConfig()).batch_rng(train=True) is None
    assert ImagePipeline(AUGMENT).batch_rng(train=True) is not None


def test_the_batch_seed_is_one_draw_from_torch() -> None:
    torch.manual_seed(7)
    first = ImagePipeline(AUGMENT).batch_rng(train=True).random()
    torch.manual_seed(7)
    expected = np.random.default_rng(int(torch.randint(0, SEED_BOUND, (1,)))).random()
    assert first == expected


@pytest.mark.parametrize(("fit", "size"), [("square", (32, 32)), ("within", (20, 12)), ("original", (80, 48))])
def test_each_fit_gives_its_size(photo: Path, fit: str, size: tuple[int, int]) -> None:
    assert ImagePipeline(AUGMENT, fit=fit, side=20).load(photo).size == size


@pytest.mark.parametrize("fit", ["square", "within", "original"])
def test_augmentation_follows_the_torch_seed_and_the_flip_mirrors(photo: Path, fit: str) -> None:
    pipeline = ImagePipeline(AUGMENT, fit=fit, side=40)
    plain = pipeline.load(photo)
    torch.manual_seed(3)
    a = pipeline.load(photo, pipeline.batch_rng(train=True))
    torch.manual_seed(3)
    b = pipeline.load(photo, pipeline.batch_rng(train=True))
    assert a.tobytes() == b.tobytes() != plain.tobytes()
    assert pipeline.load(photo, flip=True).tobytes() == ImageOps.mirror(plain).tobytes()


def test_within_needs_a_side() -> None:
    with pytest.raises(ValueError, match="within"):
        ImagePipeline(dataclasses.replace(AUGMENT), fit="within")
