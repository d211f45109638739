"""Registers the generative VLM kinds. Their modules load on first use: importing every VLM architecture and
processor costs seconds, which runs of the other kinds should not pay."""

from __future__ import annotations

from torch import nn

from mmtune.config import Config
from mmtune.models.base import register_kind


@register_kind("vlm-generative")
def build_vlm_generative(cfg: Config, labels: list[str], output_size: int) -> nn.Module:
    from mmtune.models.vlm_generative import VlmGenerativeClassifier

    return VlmGenerativeClassifier(cfg, labels, output_size)


@register_kind("vlm-head")
def build_vlm_head(cfg: Config, labels: list[str], output_size: int) -> nn.Module:
    from mmtune.models.vlm_head import VlmHeadClassifier

    return VlmHeadClassifier(cfg, labels, output_size)
