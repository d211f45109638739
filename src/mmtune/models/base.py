"""The one interface every model kind implements, and the kind registry.

A Classifier turns posts into examples once per data set (`prepare`: text normalization, cached
features of frozen towers), a list of examples into a batch (`collate`, run in DataLoader workers),
and a batch into outputs (`forward`: [batch, output_size]). `output_size` is what the training objective
asks for (mmtune.objectives: one per label for ce and focal, two for bits); the objective maps the outputs to
class log-probabilities, so a kind never knows which loss trains it. The training loop, objectives,
metrics, CV, ensembling and prediction only ever see this.

A kind may set `provides_loss = True`: then, in training mode, `forward` returns the training loss itself
(a scalar; vlm-generative's `lm` objective) instead of class outputs; in eval mode it returns class outputs.

The kinds themselves are registered in mmtune/models/kinds (one module per kind).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from mmtune.data.post import Post


@dataclass
class Example:
    """A post made ready for collation: its id, label index (or -1), prepared text and features."""

    id: str
    target: int
    text: str
    post: Post
    features: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class ParamGroup:
    """Parameters that share a learning rate: `role` is 'head' or 'backbone'."""

    role: str
    params: list[nn.Parameter]


@runtime_checkable
class Classifier(Protocol):
    labels: list[str]
    output_size: int
    flip_images: bool  # set by test-time augmentation: collate mirrors every image

    def prepare(self, posts: Sequence[Post], *, train: bool) -> list[Example]: ...

    def collate(self, examples: Sequence[Example], *, train: bool) -> dict[str, Any]: ...

    def forward(self, batch: dict[str, Any]) -> torch.Tensor: ...

    def parameter_groups(self) -> list[ParamGroup]: ...

    def set_backbone_trainable(self, trainable: bool) -> None: ...

    def trainable_parameter_names(self) -> list[str]:
        """Every parameter training may change in any stage: what a run saves."""
        ...
