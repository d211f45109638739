"""Tiny InternVL2 chat checkpoints in the original remote-code layout (`InternVLChatModel`, model type
`internvl_chat`), for testing mmtune.models.internvl_chat offline.

The folder has what a published release has that the converter reads: config.json with `vision_config`
(InternViT) and `llm_config`, `downsample_ratio` 0.5, `template`, `force_image_size`, `select_layer`,
`ps_version`; model.safetensors with the original key names (`vision_model.*` with fused `attn.qkv`, `mlp1.*`,
`language_model.*`); a tokenizer holding `<img>`, `<IMG_CONTEXT>` and `</img>`. `internvl-chat` has a Qwen2
language model (Vintern-1B, InternVL2-1B), `internvl-chat-internlm2` an InternLM2 one (InternVL2-2B/8B: fused
`wqkv`, `tok_embeddings`, `output`) with its tokenizer class `InternLM2Tokenizer` named as remote code. Both use
grouped-query attention (4 query heads, 2 key/value heads) so that the head layout of a split is tested.
The weights are random with norms and layer scales away from 1, so a swapped or missing tensor shows in logits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from mmtune.models.vlm_families._chat import CHATML, QWEN_SPECIALS
from mmtune.testing.corpus import HIDDEN, INTERMEDIATE, LAYERS
from mmtune.testing.tiny_vlm import SIZES, byte_fallback_tokenizer, byte_level_tokenizer

LM_HEADS, LM_KV_HEADS = 4, 2
IMAGE_TOKENS = ("<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>")
CHAT_TOKENS = ("<|im_start|>", "<|im_end|>")
CHAT_TEMPLATE = CHATML.replace("IMAGE", "<image>\n")  # the originals' own: their chat() builds prompts itself
REMOTE_CODE = {"AutoConfig": "configuration_internvl_chat.InternVLChatConfig",
               "AutoModel": "modeling_internvl_chat.InternVLChatModel",
               "AutoModelForCausalLM": "modeling_internvl_chat.InternVLChatModel"}


@dataclass
class OriginalCheckpoint:
    """config.json and model.safetensors as the remote-code release writes them."""

    config: dict[str, Any]
    tensors: dict[str, torch.Tensor]

    def save_pretrained(self, out: Path | str) -> None:
        (Path(out) / "config.json").write_text(json.dumps(self.config, indent=2), encoding="utf-8")
        save_file(self.tensors, str(Path(out) / "model.safetensors"), metadata={"format": "pt"})


@dataclass
class RemoteCodeTokenizer:
    """Saves a tokenizer under a remote-code class name (InternLM2's), as the release's tokenizer_config has it."""

    tokenizer: Any
    class_name: str

    def save_pretrained(self, out: Path | str) -> None:
        self.tokenizer.save_pretrained(out)
        path = Path(out) / "tokenizer_config.json"
        data = json.loads(path.read_text(encoding="utf-8"))
        data["tokenizer_class"] = self.class_name
        data["auto_map"] = {"AutoTokenizer": [f"tokenization_internlm2.{self.class_name}", None]}
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")


def build_qwen2() -> tuple[OriginalCheckpoint, list[Any]]:
    specials = [*QWEN_SPECIALS, *IMAGE_TOKENS]
    tokenizer = byte_level_tokenizer(specials, {}, CHAT_TEMPLATE)
    llm = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", **_lm_sizes(len(tokenizer)),
           "rope_theta": 1000000.0, "use_sliding_window": False, "sliding_window": 32768, "max_window_layers": 21,
           "bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
           "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"), "attn_implementation": "flash_attention_2"}
    tensors = {**_vision_tensors(), **_projector_tensors(), **_qwen2_tensors(len(tokenizer))}
    return OriginalCheckpoint(_chat_config(llm, "Hermes-2"), tensors), [tokenizer]


def build_internlm2() -> tuple[OriginalCheckpoint, list[Any]]:
    tokenizer = byte_fallback_tokenizer([*CHAT_TOKENS, *IMAGE_TOKENS], CHAT_TEMPLATE)
    llm = {"architectures": ["InternLM2ForCausalLM"], "model_type": "internlm2",
           "auto_map": {"AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM"},
           **_lm_sizes(len(tokenizer)), "rope_theta": 1000000.0, "rope_scaling": None, "bias": False,
           "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2, "attn_implementation": "eager"}
    tensors = {**_vision_tensors(), **_projector_tensors(), **_internlm2_tensors(len(tokenizer))}
    return OriginalCheckpoint(_chat_config(llm, "internlm2-chat"), tensors), \
        [RemoteCodeTokenizer(tokenizer, "InternLM2Tokenizer")]


def _chat_config(llm: dict[str, Any], template: str) -> dict[str, Any]:
    vision = {"architectures": ["InternVisionModel"], "model_type": "intern_vit_6b", "hidden_size": HIDDEN,
              "intermediate_size": INTERMEDIATE, "num_attention_heads": SIZES.heads, "num_hidden_layers": LAYERS,
              "image_size": SIZES.image_size, "patch_size": SIZES.patch_size, "num_channels": 3, "qkv_bias": True,
              "qk_normalization": False, "norm_type": "layer_norm", "layer_norm_eps": 1e-6, "hidden_act": "gelu",
              "use_flash_attn": False, "drop_path_rate": 0.0, "dropout": 0.0, "attention_dropout": 0.0,
              "initializer_factor": 1.0}
    return {"architectures": ["InternVLChatModel"], "auto_map": REMOTE_CODE, "model_type": "internvl_chat",
            "downsample_ratio": 0.5, "template": template, "force_image_size": SIZES.image_size,
            "select_layer": -1, "ps_version": "v2", "dynamic_image_size": True, "use_thumbnail": True,
            "min_dynamic_patch": 1, "max_dynamic_patch": 4, "use_backbone_lora": 0, "use_llm_lora": 0,
            "torch_dtype": "float32", "vision_config": vision, "llm_config": llm}


def _lm_sizes(vocab_size: int) -> dict[str, Any]:
    return {"vocab_size": vocab_size, "hidden_size": HIDDEN, "intermediate_size": INTERMEDIATE,
            "num_hidden_layers": LAYERS, "num_attention_heads": LM_HEADS, "num_key_value_heads": LM_KV_HEADS,
            "max_position_embeddings": SIZES.max_positions, "rms_norm_eps": 1e-6, "hidden_act": "silu",
            "tie_word_embeddings": False}


def _weight(*shape: int) -> torch.Tensor:
    return torch.randn(*shape) * 0.2


def _norm(size: int) -> torch.Tensor:
    return 1 + 0.2 * torch.randn(size)


def _vision_tensors() -> dict[str, torch.Tensor]:
    d, inner, patch = HIDDEN, INTERMEDIATE, SIZES.patch_size
    positions = (SIZES.image_size // patch) ** 2 + 1
    tensors = {"vision_model.embeddings.class_embedding": _weight(1, 1, d),
               "vision_model.embeddings.patch_embedding.weight": _weight(d, 3, patch, patch),
               "vision_model.embeddings.patch_embedding.bias": _weight(d),
               "vision_model.embeddings.position_embedding": _weight(1, positions, d)}
    for i in range(LAYERS):
        layer = f"vision_model.encoder.layers.{i}."
        tensors |= {layer + "attn.qkv.weight": _weight(3 * d, d), layer + "attn.qkv.bias": _weight(3 * d),
                    layer + "attn.proj.weight": _weight(d, d), layer + "attn.proj.bias": _weight(d),
                    layer + "ls1": 0.5 * _norm(d), layer + "ls2": 0.5 * _norm(d),
                    layer + "norm1.weight": _norm(d), layer + "norm1.bias": _weight(d),
                    layer + "norm2.weight": _norm(d), layer + "norm2.bias": _weight(d),
                    layer + "mlp.fc1.weight": _weight(inner, d), layer + "mlp.fc1.bias": _weight(inner),
                    layer + "mlp.fc2.weight": _weight(d, inner), layer + "mlp.fc2.bias": _weight(d)}
    return tensors


def _projector_tensors() -> dict[str, torch.Tensor]:
    shuffled = HIDDEN * 4  # downsample_ratio 0.5: 2x2 patches side by side
    return {"mlp1.0.weight": _norm(shuffled), "mlp1.0.bias": _weight(shuffled),
            "mlp1.1.weight": _weight(HIDDEN, shuffled), "mlp1.1.bias": _weight(HIDDEN),
            "mlp1.3.weight": _weight(HIDDEN, HIDDEN), "mlp1.3.bias": _weight(HIDDEN)}


def _qwen2_tensors(vocab: int) -> dict[str, torch.Tensor]:
    d, inner, kv = HIDDEN, INTERMEDIATE, HIDDEN // LM_HEADS * LM_KV_HEADS
    tensors = {"language_model.model.embed_tokens.weight": _weight(vocab, d)}
    for i in range(LAYERS):
        layer = f"language_model.model.layers.{i}."
        tensors |= {layer + "self_attn.q_proj.weight": _weight(d, d), layer + "self_attn.q_proj.bias": _weight(d),
                    layer + "self_attn.k_proj.weight": _weight(kv, d), layer + "self_attn.k_proj.bias": _weight(kv),
                    layer + "self_attn.v_proj.weight": _weight(kv, d), layer + "self_attn.v_proj.bias": _weight(kv),
                    layer + "self_attn.o_proj.weight": _weight(d, d),
                    layer + "mlp.gate_proj.weight": _weight(inner, d), layer + "mlp.up_proj.weight": _weight(inner, d),
                    layer + "mlp.down_proj.weight": _weight(d, inner),
                    layer + "input_layernorm.weight": _norm(d), layer + "post_attention_layernorm.weight": _norm(d)}
    return tensors | {"language_model.model.norm.weight": _norm(d), "language_model.lm_head.weight": _weight(vocab, d)}


def _internlm2_tensors(vocab: int) -> dict[str, torch.Tensor]:
    d, inner, kv = HIDDEN, INTERMEDIATE, HIDDEN // LM_HEADS * LM_KV_HEADS
    tensors = {"language_model.model.tok_embeddings.weight": _weight(vocab, d)}
    for i in range(LAYERS):
        layer = f"language_model.model.layers.{i}."
        tensors |= {layer + "attention.wqkv.weight": _weight(d + 2 * kv, d),
                    layer + "attention.wo.weight": _weight(d, d),
                    layer + "feed_forward.w1.weight": _weight(inner, d),
                    layer + "feed_forward.w3.weight": _weight(inner, d),
                    layer + "feed_forward.w2.weight": _weight(d, inner),
                    layer + "attention_norm.weight": _norm(d), layer + "ffn_norm.weight": _norm(d)}
    return tensors | {"language_model.model.norm.weight": _norm(d), "language_model.output.weight": _weight(vocab, d)}


# `mmtune make-tiny` families in the original layout (tiny.py lists them with the others)
ORIGINAL_LAYOUTS = {"internvl-chat": build_qwen2, "internvl-chat-internlm2": build_internlm2}
