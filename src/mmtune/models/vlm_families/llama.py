"""LLaMA causal LMs (text only, e.g. Vistral): SentencePiece-style BPE with byte fallback."""

from __future__ import annotations

from typing import Any

from transformers import LlamaConfig, LlamaForCausalLM

from mmtune.models.vlm_families import TinySizes, TinySpec, VlmFamily, register_family
from mmtune.models.vlm_families._chat import LLAVA_CHAT


def text_config(tokenizer: Any, sizes: TinySizes, **overrides: Any) -> LlamaConfig:
    """A tiny LLaMA language model for `tokenizer` (also the text part of LLaVA, Idefics3 and SmolVLM)."""
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    return LlamaConfig(**sizes.text(len(tokenizer)), **{**ids, **overrides})


def build_tiny(tokenizer: Any, sizes: TinySizes) -> tuple[Any, Any]:
    return LlamaForCausalLM(text_config(tokenizer, sizes)), tokenizer


FAMILY = register_family(VlmFamily(
    name="llama", model_types=("llama",), has_vision=False,
    tiny=TinySpec(tokenizer="byte_fallback", chat_template=LLAVA_CHAT, build=build_tiny),
))
