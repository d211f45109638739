"""Load a generative VLM (or a text-only causal LM) with its processor, ready to fine-tune as a classifier.

One entry point, `load_vlm(cfg)`: the Auto class the checkpoint's type calls for, SDPA attention with an eager
fallback, the weights dtype, 4-/8-bit loading (QLoRA), LoRA/DoRA on the language model (and optionally the
vision tower), freezing, and gradient checkpointing. Both VLM kinds use it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer

from mmtune.config import ModelConfig
from mmtune.errors import InputError
from mmtune.models.backbone import load_pretrained, set_up_backbone
from mmtune.models.freeze_presets import get_preset
from mmtune.models.internvl_chat.cache import native_checkpoint
from mmtune.models.vlm_families import VlmFamily, family_of, load_processor

log = logging.getLogger(__name__)


@dataclass
class LoadedVlm:
    model: nn.Module  # a *ForConditionalGeneration or *ForCausalLM
    processor: Any  # a ProcessorMixin for VLMs, the tokenizer for text-only models
    tokenizer: Any
    family: VlmFamily

    @property
    def has_vision(self) -> bool:
        return self.family.has_vision


def load_vlm(model_cfg: ModelConfig) -> LoadedVlm:
    if not model_cfg.name:
        raise InputError(f"model.name: kind {model_cfg.kind} needs a VLM checkpoint (Hub id or folder)")
    model_cfg = replace(model_cfg, name=native_checkpoint(model_cfg.name))
    remote = {"trust_remote_code": model_cfg.trust_remote_code}
    try:
        config = AutoConfig.from_pretrained(model_cfg.name, **remote)
    except (OSError, ValueError) as error:
        key = "model.trust_remote_code" if "trust_remote_code" in str(error) else "model.name"
        raise InputError(f"{key}: cannot load a config from {model_cfg.name!r} ({error})") from None
    family = family_of(config, model_cfg.name)
    model_cls = AutoModelForImageTextToText if family.has_vision else AutoModelForCausalLM
    model = load_weights(model_cls, model_cfg, remote)
    if family.has_vision:
        processor = load_processor(model_cfg.name, family, **remote)
        tokenizer = processor.tokenizer
    else:
        processor = tokenizer = AutoTokenizer.from_pretrained(model_cfg.name, **remote)
    tokenizer.padding_side = "left"  # prompts end together: the scored positions line up across the batch
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    _configure(model, model_cfg)
    return LoadedVlm(model, processor, tokenizer, family)


def weights_dtype(model_cfg: ModelConfig) -> torch.dtype:
    """fp32 on CPU (no bf16 kernels there) and for full fine-tuning; half precision for a frozen/LoRA base."""
    chosen = model_cfg.vlm.dtype
    if chosen != "auto":
        return getattr(torch, chosen)
    # Parameters that train stay fp32 (fp16 ones cannot be unscaled by the grad scaler): train_globs train some.
    frozen_base = model_cfg.lora.enabled or (model_cfg.freeze.preset == "all" and not model_cfg.freeze.train_globs)
    if not torch.cuda.is_available() or not frozen_base:
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def load_weights(model_cls: Any, model_cfg: ModelConfig, remote: dict[str, Any]) -> nn.Module:
    """`model_cls.from_pretrained(model.name)`: 4-/8-bit or in `weights_dtype`, sdpa with an eager fallback."""
    attention = model_cfg.vlm.attn_implementation
    try:
        return _from_pretrained(model_cls, model_cfg, attention, remote)
    except (ValueError, ImportError) as error:
        if attention == "eager" or "attn" not in str(error).lower() and "sdpa" not in str(error).lower():
            raise
        log.warning(f"{model_cfg.name}: sdpa attention unavailable ({error}); using eager attention")
        return _from_pretrained(model_cls, model_cfg, "eager", remote)


def _from_pretrained(model_cls: Any, model_cfg: ModelConfig, attention: str, remote: dict[str, Any]) -> nn.Module:
    return load_pretrained(model_cls, model_cfg.name, model_cfg.quantize, weights_dtype(model_cfg),
                           attn_implementation=attention, **remote)


def _configure(model: nn.Module, model_cfg: ModelConfig) -> None:
    """The backbone set-up (backbone.py): LoRA on the language model (and the vision tower with lora_vision)."""
    model.config.use_cache = False  # caches are asked for explicitly where they pay (label scoring)
    lora = model_cfg.lora
    targets = lora_targets(model, lora.targets, model_cfg.vlm.lora_vision) if lora.enabled else None
    # The block presets read the language model: a vision tower's blocks (often as many or more) would win
    # the search for "the" block list otherwise, and last_n would train the whole language model after them.
    scope = _module_name(model, model.get_decoder()) \
        if not lora.enabled and get_preset(model_cfg.freeze.preset).language_model_only else ""
    set_up_backbone(model, model_cfg.name or "", freeze=model_cfg.freeze, lora=lora if lora.enabled else None,
                    quantized=model_cfg.quantize != "none", checkpointing=model_cfg.gradient_checkpointing,
                    lora_targets=targets, scope=scope)


def lora_targets(model: nn.Module, leaf_names: list[str] | None, with_vision: bool) -> list[str]:
    """Full names of the linear layers that get adapters: the language model's projections (`leaf_names` or its
    family's defaults), and with `with_vision` every linear layer of the vision tower and projector as well."""
    decoder = model.get_decoder()
    output = model.get_output_embeddings()
    inside_decoder = {id(module) for module in decoder.modules()}
    wanted = tuple(leaf_names) if leaf_names else family_of(model.config, model.config.name_or_path).lora_targets
    targets = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or module is output or "lora_" in name:
            continue
        if id(module) in inside_decoder:
            if name.rsplit(".", 1)[-1] in wanted:
                targets.append(name)
        elif with_vision:
            targets.append(name)
    if not targets:
        raise InputError(f"model.lora.targets: none of {', '.join(wanted)} is a linear layer of "
                         f"{type(model).__name__}'s language model")
    # Each name given must adapt something: peft only fails when nothing matches, so a misspelt one would vanish.
    decoder_linears = [name for name, module in model.named_modules()
                       if isinstance(module, nn.Linear) and id(module) in inside_decoder]
    for leaf in leaf_names or []:
        if not any(name.rsplit(".", 1)[-1] == leaf for name in decoder_linears):
            raise InputError(f"model.lora.targets: {leaf!r} is not a linear layer of {type(model).__name__}'s "
                             f"language model (its projections: {', '.join(_leaf_names(decoder_linears))})")
    return targets


def _module_name(model: nn.Module, part: nn.Module) -> str:
    return next(name for name, module in model.named_modules() if module is part)


def _leaf_names(names: list[str]) -> list[str]:
    return sorted({name.rsplit(".", 1)[-1] for name in names})
