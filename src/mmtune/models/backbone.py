"""Backbone set-up, one path for every kind: load (4-/8-bit for QLoRA), then LoRA or a freeze preset, then
gradient checkpointing. The kinds pass the settings they read; nothing here reads the config's key paths."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mmtune.config import FreezeConfig, LoraConfig
from mmtune.models.adapters import apply_lora, enable_gradient_checkpointing, load_quantized, quantized_compute_dtype
from mmtune.models.freezing import apply_freeze

log = logging.getLogger(__name__)


def load_pretrained(model_cls: Any, path: str, quantize: str, dtype: torch.dtype | None = None,
                    **from_pretrained_kwargs: Any) -> nn.Module:
    """`model_cls.from_pretrained(path)` (in `dtype` when given), or in 4-/8-bit when `quantize` (model.quantize)
    is 4bit/8bit: then in the compute dtype the GPU has, frozen and ready for adapters."""
    if quantize == "none":
        dtype_kwargs = {"dtype": dtype} if dtype is not None else {}
        return model_cls.from_pretrained(path, **dtype_kwargs, **from_pretrained_kwargs)
    bits = 4 if quantize == "4bit" else 8
    return load_quantized(model_cls, path, bits, quantized_compute_dtype(), **from_pretrained_kwargs)


def set_up_backbone(model: nn.Module, label: str, *, freeze: FreezeConfig, lora: LoraConfig | None,
                    quantized: bool, checkpointing: bool, lora_targets: Sequence[str] | None = None,
                    scope: str = "") -> nn.Module:
    """What trains in `model`: LoRA adapters on a frozen base when `lora` is given; else nothing when it is
    `quantized` (integer weights train only through adapters); else the freeze preset and globs (the preset
    reading the submodule `scope`). Then gradient checkpointing when asked and something trains (a frozen
    backbone runs without gradients: checkpointing it would only cost time). `label` names it in the log.
    Returns the model (adapters are injected in place)."""
    if lora is not None:
        apply_freeze(model, "all")
        targets = lora_targets if lora_targets is not None else lora.targets
        model = apply_lora(model, r=lora.r, alpha=lora.alpha, dropout=lora.dropout, targets=targets, dora=lora.dora)
    elif quantized:
        apply_freeze(model, "all")
        log.info(f"{label}: quantized and frozen; enable model.lora to fine-tune it (QLoRA)")
    else:
        report = apply_freeze(model, freeze.preset, freeze.last_n, freeze.freeze_globs, freeze.train_globs, scope)
        log.info(f"{label}: {report.summary()}")
    if checkpointing and any(p.requires_grad for p in model.parameters()):
        enable_gradient_checkpointing(model)
    return model
