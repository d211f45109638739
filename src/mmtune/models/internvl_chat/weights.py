"""The weights of an InternVL2 chat checkpoint under the names of transformers' `InternVLForConditionalGeneration`.

InternViT (`vision_model.*`) becomes `model.vision_tower.*` with its fused `attn.qkv` split into q/k/v, `mlp1`
(LayerNorm, Linear, GELU, Linear) becomes `model.multi_modal_projector`, and the language model becomes
transformers' own class: Qwen2 keeps its names, InternLM2 becomes LLaMA (its fused `wqkv` split, see
`_split_wqkv`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LlamaConfig, LlamaTokenizer, PreTrainedConfig, Qwen2Config, Qwen2Tokenizer

# Keys of the original llm_config that name remote code or a kernel, not the architecture.
_NOT_ARCHITECTURE = ("architectures", "auto_map", "_name_or_path", "attn_implementation", "_attn_implementation",
                     "_attn_implementation_autoset", "use_flash_attn", "transformers_version", "model_type")

_VISION = (
    (r"^vision_model\.", "model.vision_tower."),
    (r"\.embeddings\.class_embedding$", ".embeddings.cls_token"),
    (r"\.embeddings\.patch_embedding\.", ".embeddings.patch_embeddings.projection."),
    (r"\.embeddings\.position_embedding$", ".embeddings.position_embeddings"),
    (r"\.encoder\.layers\.(\d+)\.", r".encoder.layer.\1."),
    (r"\.attn\.proj\.", ".attention.projection_layer."),
    (r"\.attn\.", ".attention."),
    (r"\.ls1$", ".lambda_1"),
    (r"\.ls2$", ".lambda_2"),
    (r"\.norm1\.", ".layernorm_before."),
    (r"\.norm2\.", ".layernorm_after."),
)
_PROJECTOR = (
    (r"^mlp1\.0\.", "model.multi_modal_projector.layer_norm."),
    (r"^mlp1\.1\.", "model.multi_modal_projector.linear_1."),
    (r"^mlp1\.3\.", "model.multi_modal_projector.linear_2."),
)
_QWEN2 = (
    (r"^language_model\.model\.", "model.language_model."),
    (r"^language_model\.lm_head\.", "lm_head."),
)
_INTERNLM2 = (
    (r"^language_model\.model\.", "model.language_model."),
    (r"^language_model\.output\.", "lm_head."),
    (r"\.tok_embeddings\.", ".embed_tokens."),
    (r"\.attention\.wqkv\.", ".self_attn.wqkv."),  # split by _split_wqkv
    (r"\.attention\.wo\.", ".self_attn.o_proj."),
    (r"\.feed_forward\.w1\.", ".mlp.gate_proj."),
    (r"\.feed_forward\.w3\.", ".mlp.up_proj."),
    (r"\.feed_forward\.w2\.", ".mlp.down_proj."),
    (r"\.attention_norm\.", ".input_layernorm."),
    (r"\.ffn_norm\.", ".post_attention_layernorm."),
)


def _qwen2_config(llm: dict[str, Any]) -> PreTrainedConfig:
    # The originals save use_cache false (training); generation wants it.
    kept = {key: value for key, value in llm.items() if key not in _NOT_ARCHITECTURE}
    return Qwen2Config.from_dict({**kept, "use_cache": True})


def _llama_config(llm: dict[str, Any]) -> PreTrainedConfig:
    """InternLM2 is LLaMA with fused projections: the same norms, rotary embedding (and dynamic NTK scaling)."""
    heads = llm["num_attention_heads"]
    return LlamaConfig(
        vocab_size=llm["vocab_size"], hidden_size=llm["hidden_size"], intermediate_size=llm["intermediate_size"],
        num_hidden_layers=llm["num_hidden_layers"], num_attention_heads=heads,
        num_key_value_heads=llm.get("num_key_value_heads", heads), head_dim=llm["hidden_size"] // heads,
        hidden_act=llm.get("hidden_act", "silu"), max_position_embeddings=llm["max_position_embeddings"],
        rms_norm_eps=llm.get("rms_norm_eps", 1e-6), rope_theta=llm.get("rope_theta", 10000.0),
        rope_scaling=llm.get("rope_scaling"), bos_token_id=llm.get("bos_token_id"),
        eos_token_id=llm.get("eos_token_id"), pad_token_id=llm.get("pad_token_id"),
        tie_word_embeddings=llm.get("tie_word_embeddings", False), attention_bias=False, mlp_bias=False,
    )


@dataclass(frozen=True)
class LanguageModel:
    architecture: str  # the original llm_config's architectures[0]
    releases: str  # for messages
    renames: tuple[tuple[str, str], ...]
    text_config: Callable[[dict[str, Any]], PreTrainedConfig]
    tokenizer_class: type  # reads the original tokenizer files without its remote code
    tokenizer_options: tuple[tuple[str, Any], ...] = ()


LANGUAGE_MODELS = {lm.architecture: lm for lm in (
    LanguageModel("Qwen2ForCausalLM", "Vintern-1B, InternVL2-1B, InternVL2.5-1B", _QWEN2, _qwen2_config,
                  Qwen2Tokenizer),
    # InternLM2's SentencePiece model adds no "▁" before the text (transformers' own -hf conversions say so too).
    LanguageModel("InternLM2ForCausalLM", "InternVL2-2B/8B, InternVL2.5-2B/8B", _INTERNLM2, _llama_config,
                  LlamaTokenizer, (("add_prefix_space", False), ("legacy", False))),
)}


def native_weights(tensors: Iterator[tuple[str, torch.Tensor]], lm: LanguageModel,
                   text: PreTrainedConfig) -> Iterator[tuple[str, torch.Tensor]]:
    """The original (name, tensor) pairs renamed and split for `InternVLForConditionalGeneration`."""
    for key, tensor in tensors:
        if key.startswith("vision_model."):
            name = _rename(key, _VISION)
            if name.endswith((".attention.qkv.weight", ".attention.qkv.bias")):
                yield from _split_qkv(name, tensor)
                continue
        elif key.startswith("mlp1."):
            name = _rename(key, _PROJECTOR)
        elif key.startswith("language_model."):
            name = _rename(key, lm.renames)
            if ".self_attn.wqkv." in name:
                yield from _split_wqkv(name, tensor, text)
                continue
        else:
            name = key  # reported as unexpected by the caller
        yield name, tensor


def _rename(key: str, renames: tuple[tuple[str, str], ...]) -> str:
    for pattern, replacement in renames:
        key = re.sub(pattern, replacement, key)
    return key


def _split_qkv(name: str, tensor: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
    # InternViT's qkv output is [q | k | v], each all heads of hidden_size.
    for part, chunk in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0), strict=True):
        yield name.replace(".qkv.", f".{part}."), chunk.clone()


def _split_wqkv(name: str, tensor: torch.Tensor, text: PreTrainedConfig) -> Iterator[tuple[str, torch.Tensor]]:
    """InternLM2's wqkv output is grouped per key/value head h: [q(h, 0) .. q(h, g-1), k(h), v(h)] with g query
    heads per kv head, so query head h*g+i reads kv head h, as LLaMA's repeat_kv pairs them."""
    kv_heads, head_dim = text.num_key_value_heads, text.head_dim
    groups = text.num_attention_heads // kv_heads
    grouped = tensor.reshape(kv_heads, groups + 2, head_dim, -1)
    parts = {"q_proj": grouped[:, :groups], "k_proj": grouped[:, -2], "v_proj": grouped[:, -1]}
    for part, weight in parts.items():
        yield name.replace(".wqkv.", f".{part}."), weight.reshape(-1, tensor.shape[-1]).contiguous()
