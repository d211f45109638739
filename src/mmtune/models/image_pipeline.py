"""The image path every kind shares: load -> augment (training batches) -> flip (test-time flip).

What differs between kinds is only the size an image is loaded at (`fit`):
    square    resized by `data.image.resize` to `image_cfg.size` (the fusion towers: their processors
              only normalise), augmented before that resize (data.images.prepare_image says why)
    within    shrunk so that its longer side is at most `side` (a VLM's image budget), then augmented
    original  as stored (ViLT's processor resizes), then augmented
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image

from mmtune.config import ImageConfig
from mmtune.data.images import Augmenter, load_image, load_within, prepare_image

Fit = Literal["square", "within", "original"]
# Why 62 bits: seeds of a long run's batches must not collide (with 31 bits, two of ~55,000 batches share one
# seed at even odds, and repeat each other's augmentation); numpy takes any non-negative integer as a seed.
SEED_BOUND = 2**62


class ImagePipeline:
    def __init__(self, image_cfg: ImageConfig, fit: Fit = "original", side: int = 0) -> None:
        if fit == "within" and side < 1:
            raise ValueError("fit 'within' needs the side to fit in")
        self.image_cfg = image_cfg
        self.fit = fit
        self.side = side
        self.augmenter = Augmenter.for_images(image_cfg) if image_cfg.augment.enabled else None

    def batch_rng(self, train: bool) -> np.random.Generator | None:
        """The generator one training batch augments with; None when the batch is not augmented.

        Why a fresh generator per batch, seeded with a draw from torch's global RNG: DataLoader workers get
        distinct torch seeds (a numpy generator copied into each worker would repeat the same draws in all of
        them), and last/ saves the torch RNG state, so a resumed run augments as the uninterrupted one would.
        """
        if not train or self.augmenter is None:
            return None
        return np.random.default_rng(int(torch.randint(0, SEED_BOUND, (1,))))

    def load(self, path: Path, rng: np.random.Generator | None = None, flip: bool = False) -> Image.Image:
        """One image, augmented when `rng` is given (see `batch_rng`), mirrored when `flip`."""
        augmenter = self.augmenter if rng is not None else None
        if self.fit == "square":
            image = prepare_image(path, self.image_cfg, augmenter, rng)
        else:
            image = self._load(path)
            if augmenter is not None and rng is not None:
                image = augmenter(image, rng)
        return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else image

    def load_all(self, paths: Sequence[Path], rng: np.random.Generator | None = None,
                 flip: bool = False) -> list[Image.Image]:
        return [self.load(path, rng, flip) for path in paths]

    def _load(self, path: Path) -> Image.Image:
        cfg = self.image_cfg
        if self.fit == "within":
            return load_within(path, cfg.max_pixels, self.side, max_bytes=cfg.max_bytes)
        return load_image(path, cfg.max_pixels, max_bytes=cfg.max_bytes)
