"""Optimizer, schedule, and the learning-rate rule for the effective batch size.

The rule (`train.lr_scaling`): learning rates are given for `train.reference_batch_size`; with an
effective batch B = batch_size x grad_accum x processes they become lr x B / ref ("linear", Goyal et
al.) or lr x sqrt(B / ref) ("sqrt", usual for Adam); "none" keeps them as written.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import get_scheduler

from mmtune.config import TrainConfig
from mmtune.errors import InputError
from mmtune.models.base import ParamGroup

log = logging.getLogger(__name__)

_NO_DECAY = ("bias", "norm")  # as transformers.Trainer: biases and normalization weights


@dataclass(frozen=True)
class LearningRates:
    head: float
    backbone: float
    factor: float
    effective_batch: int


def scaled_learning_rates(cfg: TrainConfig, effective_batch: int) -> LearningRates:
    ratio = effective_batch / cfg.reference_batch_size
    factor = {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[cfg.lr_scaling]
    return LearningRates(head=cfg.head_lr * factor, backbone=cfg.lr * factor, factor=factor,
                         effective_batch=effective_batch)


def build_optimizer(model: nn.Module, groups: list[ParamGroup], cfg: TrainConfig,
                    rates: LearningRates) -> torch.optim.Optimizer:
    """AdamW over the head and backbone groups, weight decay off for biases and normalization weights."""
    names = {id(p): n for n, p in model.named_parameters()}
    param_groups = []
    for group in groups:
        lr = rates.head if group.role == "head" else rates.backbone
        decay = [p for p in group.params if not _is_no_decay(names.get(id(p), ""), p)]
        plain = [p for p in group.params if _is_no_decay(names.get(id(p), ""), p)]
        for params, weight_decay in ((decay, cfg.weight_decay), (plain, 0.0)):
            if params:
                param_groups.append({"params": params, "lr": lr, "weight_decay": weight_decay, "role": group.role})
    if not param_groups:
        raise InputError("nothing to train: every parameter is frozen (check model.freeze and model.lora)")
    if cfg.optimizer == "adamw_8bit":
        return _adamw_8bit(model, param_groups)
    return torch.optim.AdamW(param_groups)


def _is_no_decay(name: str, param: nn.Parameter) -> bool:
    return param.ndim < 2 or any(part in name.lower() for part in _NO_DECAY)


def _adamw_8bit(model: nn.Module, param_groups: list[dict]) -> torch.optim.Optimizer:
    try:
        import bitsandbytes as bnb
        from bitsandbytes.optim import GlobalOptimManager
    except ImportError:
        raise InputError("train.optimizer=adamw_8bit needs bitsandbytes: pip install bitsandbytes") from None
    manager = GlobalOptimManager.get_instance()
    for module in model.modules():
        # Why: 8-bit state for embedding rows that are rarely updated loses too much; the
        # bitsandbytes authors keep embeddings in 32-bit state.
        if isinstance(module, nn.Embedding) and module.weight.requires_grad:
            manager.register_module_override(module, "weight", {"optim_bits": 32})
    return bnb.optim.AdamW8bit(param_groups)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                    total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    warmup = int(round(cfg.warmup_ratio * total_steps))
    name = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[cfg.schedule]
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=max(1, total_steps))


def scale_backbone_lr(scheduler: torch.optim.lr_scheduler.LRScheduler, optimizer: torch.optim.Optimizer,
                      factor: float) -> None:
    """Two-stage schedule: after the head-only epochs the backbone's base learning rate is multiplied.

    The base rates live in the scheduler (its state_dict), so a resumed run keeps the change.
    """
    for index, group in enumerate(optimizer.param_groups):
        if group.get("role") == "backbone":
            scheduler.base_lrs[index] *= factor
