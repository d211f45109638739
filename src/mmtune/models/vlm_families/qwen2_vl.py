"""Qwen2-VL: a ViT over native-resolution patches (merged 2x2), a Qwen2 LM with multimodal rotary positions
(mrope); an image costs tokens by its pixels, bounded by `model.vlm.max_pixels`."""

from __future__ import annotations

from typing import Any

from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessorPil

from mmtune.compat import Qwen2VLProcessorWithoutVideo
from mmtune.config import VlmConfig
from mmtune.errors import InputError
from mmtune.models.vlm_families import TinySizes, TinySpec, VlmFamily, register_family
from mmtune.models.vlm_families._chat import CHATML, QWEN_SPECIALS

PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"
SPECIALS = QWEN_SPECIALS + ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")


def image_budget(processor: Any, vlm: VlmConfig) -> dict[str, Any]:
    minimum = processor.image_processor.size.get("shortest_edge", 56 * 56)
    if vlm.max_pixels < minimum:
        raise InputError(f"model.vlm.max_pixels: {vlm.max_pixels} is below the processor's minimum {minimum}")
    return {"size": {"shortest_edge": minimum, "longest_edge": vlm.max_pixels}}


def tiny_model(tokenizer: Any, sizes: TinySizes, config_cls: Any, model_cls: Any, processor_cls: Any,
               vision: dict[str, Any]) -> tuple[Any, Any]:
    """A tiny Qwen2-VL or Qwen2.5-VL with `vision` (the tower's config, patches of 4 px) and its processor."""
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    # mrope sections (temporal, height, width) cover head_dim / 2 rotary frequencies.
    mrope_section = [2, 3, 3]
    if sum(mrope_section) != sizes.hidden // sizes.heads // 2:
        raise ValueError(f"mrope sections {mrope_section} do not cover head_dim / 2")
    text = {**sizes.text(len(tokenizer)), "bos_token_id": None, "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section}}
    config = config_cls(text_config=text, vision_config=vision, **ids, pad_token_id=tokenizer.pad_token_id,
                        bos_token_id=None)
    patch = vision["patch_size"]
    # At most image_size x image_size pixels: (32/4)^2 = 64 patches, merged 2x2 into 16 tokens per image.
    image_processor = Qwen2VLImageProcessorPil(patch_size=patch, merge_size=2, temporal_patch_size=2,
                                               size={"shortest_edge": (2 * patch) ** 2,
                                                     "longest_edge": sizes.image_size ** 2})
    processor = processor_cls(image_processor=image_processor, tokenizer=tokenizer,
                              chat_template=tokenizer.chat_template)
    return model_cls(config), processor


def build_tiny(tokenizer: Any, sizes: TinySizes) -> tuple[Any, Any]:
    vision = {"depth": sizes.layers, "embed_dim": sizes.hidden, "hidden_size": sizes.hidden, "num_heads": sizes.heads,
              "mlp_ratio": 2, "patch_size": 4, "spatial_merge_size": 2, "temporal_patch_size": 2}
    return tiny_model(tokenizer, sizes, Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessorWithoutVideo,
                      vision)


FAMILY = register_family(VlmFamily(
    name="qwen2-vl", model_types=("qwen2_vl",), has_vision=True, processor_class="Qwen2VLProcessor",
    processor_without_video=Qwen2VLProcessorWithoutVideo, image_placeholder=PLACEHOLDER, image_budget=image_budget,
    rope_deltas=True,
    tiny=TinySpec(tokenizer="byte_level", chat_template=CHATML, specials=SPECIALS, build=build_tiny),
))
