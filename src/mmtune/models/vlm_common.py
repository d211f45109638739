"""What the two VLM kinds share: the loaded model and its inputs, and the Classifier bookkeeping around them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from mmtune.config import Config
from mmtune.data.post import Post
from mmtune.models.base import Example
from mmtune.models.trainable import TracksTrainable, TrainableSet
from mmtune.models.vlm_inputs import VlmInputs
from mmtune.models.vlm_loading import load_vlm


class VlmClassifierBase(TracksTrainable, nn.Module):
    """A loaded VLM (`self.vlm`) with its prompt inputs; subclasses add `forward` and maybe a head."""

    def __init__(self, cfg: Config, labels: list[str]) -> None:
        super().__init__()
        self.cfg = cfg
        self.labels = list(labels)
        loaded = load_vlm(cfg.model)
        self.vlm = loaded.model
        self.inputs = VlmInputs(cfg, loaded, self.labels)

    @property
    def flip_images(self) -> bool:
        return self.inputs.flip_images

    @flip_images.setter
    def flip_images(self, value: bool) -> None:
        self.inputs.flip_images = value

    def _record_trainable(self) -> None:
        # Called once the head exists: every parameter any stage trains, what a run saves.
        self.trainable = TrainableSet(self, ("vlm.",))

    def prepare(self, posts: Sequence[Post], *, train: bool) -> list[Example]:
        return self.inputs.prepare(posts)

    def collate(self, examples: Sequence[Example], *, train: bool) -> dict[str, Any]:
        return self.inputs.encode(examples, train)
