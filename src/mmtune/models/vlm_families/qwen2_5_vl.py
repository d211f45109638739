"""Qwen2.5-VL: Qwen2-VL's processing and positions, a vision tower with windowed attention."""

from __future__ import annotations

from typing import Any

from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

from mmtune.compat import Qwen2_5_VLProcessorWithoutVideo
from mmtune.models.vlm_families import TinySizes, TinySpec, VlmFamily, register_family
from mmtune.models.vlm_families._chat import CHATML
from mmtune.models.vlm_families.qwen2_vl import PLACEHOLDER, SPECIALS, image_budget, tiny_model


def build_tiny(tokenizer: Any, sizes: TinySizes) -> tuple[Any, Any]:
    vision = {"depth": sizes.layers, "hidden_size": sizes.hidden, "out_hidden_size": sizes.hidden,
              "intermediate_size": sizes.intermediate, "num_heads": sizes.heads, "patch_size": 4,
              "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 16, "fullatt_block_indexes": [1]}
    return tiny_model(tokenizer, sizes, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration,
                      Qwen2_5_VLProcessorWithoutVideo, vision)


FAMILY = register_family(VlmFamily(
    name="qwen2.5-vl", model_types=("qwen2_5_vl",), has_vision=True, processor_class="Qwen2_5_VLProcessor",
    processor_without_video=Qwen2_5_VLProcessorWithoutVideo, image_placeholder=PLACEHOLDER,
    image_budget=image_budget, rope_deltas=True,
    tiny=TinySpec(tokenizer="byte_level", chat_template=CHATML, specials=SPECIALS, build=build_tiny),
))
