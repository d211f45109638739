"""The service runs one post through the model before it answers anyone: the first client does not pay for
engines that load on first use."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from mmtune.recipes.serve import warm_up


class _Recording:
    def __init__(self) -> None:
        self.seen = []

    def predict(self, posts):
        for post in posts:
            with Image.open(post.images[0]) as image:  # readable while the model runs
                self.seen.append((post.text, image.size, post.images[0], os.readlink(post.images[0])))
        return np.zeros((len(posts), 2))


def test_warm_up_runs_one_post_with_an_in_memory_image_and_closes_it():
    predictor = _Recording()
    warm_up(predictor)
    [(text, size, path, target)] = predictor.seen
    assert text and size == (64, 64) and target.startswith("/memfd:")  # never a file on disk
    assert not path.exists() or os.readlink(path) != target  # closed once the model has run
