"""Posts into Examples, the same for every kind: normalized text with its extra fields packed, and the label index."""

from __future__ import annotations

from collections.abc import Sequence

from mmtune.config import TextConfig
from mmtune.data.post import Post
from mmtune.data.text import TextNormalizer, pack_text
from mmtune.models.base import Example


class ExampleMaker:
    """`maker(post)` -> an Example whose target is the label's index in `labels` (-1: unlabelled or unknown)."""

    def __init__(self, labels: Sequence[str], text_cfg: TextConfig) -> None:
        self.labels = list(labels)
        self.text_cfg = text_cfg
        self.normalizer = TextNormalizer(text_cfg)

    def __call__(self, post: Post) -> Example:
        extra = {name: self.normalizer(value) for name, value in post.extra.items()}
        text = pack_text(self.normalizer(post.text), extra, self.text_cfg)
        target = self.labels.index(post.label) if post.label in self.labels else -1
        return Example(id=post.id, target=target, text=text, post=post)
