"""The one interface every model kind implements, and the kind registry.

A Classifier turns posts into examples once per data set (`prepare`: text normalization, cached
features of frozen towers), a list of examples into a batch (`collate`, run in DataLoader workers),
and a batch into outputs (`forward`: [batch, output_size]). `output_size` is what the training objective
asks for (mmtune.objectives: one per label for ce and focal, two for bits); the objective maps the outputs to
class log-probabilities, so a kind never knows which loss trains it. The training loop, objectives,
metrics, CV, ensembling and prediction only ever see this.

A kind may set `provides_loss = True`: then, in training mode, `forward` returns the training loss itself
(a scalar; vlm-generative's `lm` objective) instead of class outputs; in eval mode it returns class outputs.

Kinds register a builder with `@register_kind("name")` (timm's register_model / create_model);
`build_classifier(cfg, labels, output_size)` looks the kind up. Adding a kind is one new module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from mmtune.config import Config
from mmtune.data.post import Post
from mmtune.errors import InputError


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


Builder = Callable[[Config, list[str], int], nn.Module]
_KINDS: dict[str, Builder] = {}


def register_kind(name: str) -> Callable[[Builder], Builder]:
    def decorator(builder: Builder) -> Builder:
        if name in _KINDS:
            raise ValueError(f"model kind '{name}' is registered twice")
        _KINDS[name] = builder
        return builder

    return decorator


def known_kinds() -> list[str]:
    _import_kinds()
    return sorted(_KINDS)


def build_classifier(cfg: Config, labels: list[str], output_size: int) -> nn.Module:
    """The classifier of kind `cfg.model.kind` for `labels` (in model order), `output_size` outputs per post."""
    _import_kinds()
    try:
        builder = _KINDS[cfg.model.kind]
    except KeyError:
        raise InputError(f"model.kind: unknown kind '{cfg.model.kind}' (known: {', '.join(sorted(_KINDS))})") from None
    return builder(cfg, labels, output_size)


def _import_kinds() -> None:
    # Importing the kind modules runs their @register_kind decorators.
    from mmtune.models import fusion, vilt, vlm_kinds  # noqa: F401
