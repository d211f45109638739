"""LoRA / DoRA adapters, k-bit (QLoRA) loading and gradient checkpointing for backbones.

Adapters are injected in place with `peft.inject_adapter_in_model`, not wrapped with `get_peft_model`: our
classifier calls `backbone(**inputs)` and reads `backbone.config`, and the injected backbone stays the same
object of the same class (a `BertModel` stays a `BertModel`: isinstance checks, `.config`, `get_input_embeddings`,
`activation_checkpointing_enable` all keep working), while a `PeftModel` wrapper would change the class, add a
`base_model.model.` prefix to every name, and route `forward` through peft's task-specific signatures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import inject_adapter_in_model
from peft.tuners.tuners_utils import cast_adapter_dtype
from torch import nn

from mmtune.compat import keep_bnb_4bit_training_layout
from mmtune.errors import InputError

# The query/value projections, per attention naming family: all of a family's names must be present.
TARGET_FAMILIES: tuple[tuple[str, ...], ...] = (
    ("query", "value"),  # BERT, XLM-R, PhoBERT, E5, ViLT
    ("q_proj", "v_proj"),  # CLIP, SigLIP, ViT (transformers 5)
    ("qkv",),  # fused projections (timm-style ViTs)
)


def default_lora_targets(model: nn.Module) -> list[str]:
    """LoRA target names for `model`: its attention query/value projections."""
    names = _linear_leaf_names(model)
    targets: list[str] = []
    for family in TARGET_FAMILIES:
        if all(name in names for name in family):
            targets += list(family)
    if not targets:
        raise InputError(f"model.lora.targets: no query/value projections found in {type(model).__name__}; "
                         f"name some of its linear layers: {', '.join(sorted(names)) or 'none'}")
    return targets


def _linear_leaf_names(model: nn.Module) -> set[str]:
    inside_mha = _inside_multihead_attention(model)
    return {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and name not in inside_mha and "lora_" not in name}


def _inside_multihead_attention(model: nn.Module) -> set[str]:
    # nn.MultiheadAttention reads `out_proj.weight` directly, so a LoRA on that Linear would be silently
    # bypassed (SigLIP's pooling head has one, and the suffix `out_proj` also names CLIP/SigLIP projections).
    return {f"{name}.{child}" if name else child for name, module in model.named_modules()
            if isinstance(module, nn.MultiheadAttention) for child, _ in module.named_children()}


def _matches(name: str, targets: Sequence[str]) -> bool:
    return any(name == target or name.endswith("." + target) for target in targets)


def apply_lora(model: nn.Module, r: int, alpha: int, dropout: float, targets: Sequence[str] | None,
               dora: bool = False) -> nn.Module:
    """Inject LoRA (or DoRA) adapters into `model` in place; afterwards only adapter parameters train."""
    check_lora_numbers(r, alpha, dropout)
    if getattr(model, "peft_config", None):
        raise InputError(f"model.lora: {type(model).__name__} already has LoRA adapters")
    targets = list(targets) if targets else default_lora_targets(model)
    _check_targets(model, targets)
    excluded = sorted(name for name in _inside_multihead_attention(model) if _matches(name, targets))
    config = PeftLoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets,
                            exclude_modules=excluded or None, use_dora=dora, bias="none")
    try:
        model = inject_adapter_in_model(config, model)
    except ValueError as error:  # e.g. a target that is a module type peft cannot adapt
        raise InputError(f"model.lora.targets: {error}") from error
    # Adapters take the base layer's dtype; on a half-precision base they train in fp32 (fp16 gradients could
    # not be unscaled by the grad scaler), as get_peft_model's autocast_adapter_dtype does.
    cast_adapter_dtype(model, adapter_name="default")
    return model


def check_lora_numbers(r: int, alpha: int, dropout: float) -> None:
    if r < 1:
        raise InputError(f"model.lora.r: the rank must be at least 1, got {r}")
    if alpha <= 0:
        raise InputError(f"model.lora.alpha: must be positive, got {alpha}")
    if not 0.0 <= dropout < 1.0:
        raise InputError(f"model.lora.dropout: must be in [0, 1), got {dropout}")


def _check_targets(model: nn.Module, targets: Sequence[str]) -> None:
    # peft only fails when no target matches at all; one misspelt name among several would adapt less, silently.
    module_names = [name for name, _ in model.named_modules()]
    for target in targets:
        if not any(_matches(name, [target]) for name in module_names):
            raise InputError(f"model.lora.targets: {target!r} matches no module of {type(model).__name__}; "
                             f"linear layers are named {', '.join(sorted(_linear_leaf_names(model)))}")


def quantized_compute_dtype() -> torch.dtype:
    """The dtype 4-/8-bit layers compute in: bf16 where the GPU has it, fp16 on older GPUs, fp32 on CPU."""
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16 if torch.cuda.is_available() else torch.float32


def load_quantized(model_cls: Any, path_or_id: str, bits: int, compute_dtype: torch.dtype,
                   **from_pretrained_kwargs: Any) -> Any:
    """Load `model_cls.from_pretrained(path_or_id)` in 4-bit NF4 or 8-bit, frozen and ready for (Q)LoRA.

    Extra keyword arguments (e.g. `device_map`) go to `from_pretrained`.
    """
    from transformers import BitsAndBytesConfig

    _require_bitsandbytes()
    if bits == 4:
        quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                          bnb_4bit_compute_dtype=compute_dtype, bnb_4bit_use_double_quant=True)
    elif bits == 8:
        quantization = BitsAndBytesConfig(load_in_8bit=True)
    else:
        raise InputError(f"model.quantize: {bits} bits is not supported; use 4bit or 8bit")
    model = model_cls.from_pretrained(path_or_id, quantization_config=quantization, dtype=compute_dtype,
                                      **from_pretrained_kwargs)
    keep_bnb_4bit_training_layout(model)
    from peft import prepare_model_for_kbit_training

    # peft's own checkpointing path calls the deprecated `gradient_checkpointing_enable` and adds the input
    # grad hook; ours uses non-reentrant checkpointing, which needs no hook.
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def _require_bitsandbytes() -> None:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as error:
        raise InputError("model.quantize: needs the bitsandbytes package (pip install bitsandbytes), "
                         "or set model.quantize: none") from error


def enable_gradient_checkpointing(model: nn.Module) -> None:
    """Turn on non-reentrant activation checkpointing in a HF model (before or after adapters are added).

    Non-reentrant checkpointing gives exact gradients to adapters behind a frozen embedding without
    `enable_input_require_grads`. That hook (which transformers adds on its own for text models) is removed
    again: it makes the embedding output require grad, so backward would run through every frozen layer.
    """
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise InputError(f"model.gradient_checkpointing: {type(model).__name__} does not support it")
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.23, where the old name warns
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if hasattr(model, "disable_input_require_grads") and getattr(model, "_require_grads_hooks", None):
        model.disable_input_require_grads()
