"""Qwen2 / Qwen2.5 causal LMs (text only): ChatML, byte-level BPE."""

from __future__ import annotations

from typing import Any

from transformers import Qwen2Config, Qwen2ForCausalLM

from mmtune.models.vlm_families import TinySizes, TinySpec, VlmFamily, register_family
from mmtune.models.vlm_families._chat import CHATML, QWEN_SPECIALS


def build_tiny(tokenizer: Any, sizes: TinySizes) -> tuple[Any, Any]:
    config = Qwen2Config(**sizes.text(len(tokenizer)), eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    return Qwen2ForCausalLM(config), tokenizer


FAMILY = register_family(VlmFamily(
    name="qwen2", model_types=("qwen2",), has_vision=False,
    tiny=TinySpec(tokenizer="byte_level", chat_template=CHATML, specials=QWEN_SPECIALS, build=build_tiny),
))
