"""SmolVLM: Idefics3's architecture and processing with a smaller LM (its processor also takes videos)."""

from __future__ import annotations

from typing import Any

from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration, SmolVLMImageProcessorPil

from mmtune.compat import SmolVLMProcessorWithoutVideo
from mmtune.models.vlm_families import TinySizes, TinySpec, VlmFamily, register_family
from mmtune.models.vlm_families._chat import IDEFICS_CHAT
from mmtune.models.vlm_families.idefics3 import SPECIALS, image_budget, tiny_parts


def build_tiny(tokenizer: Any, sizes: TinySizes) -> tuple[Any, Any]:
    config, image_processor, seq_len = tiny_parts(tokenizer, sizes, SmolVLMImageProcessorPil, SmolVLMConfig)
    processor = SmolVLMProcessorWithoutVideo(image_processor=image_processor, tokenizer=tokenizer,
                                             image_seq_len=seq_len, chat_template=tokenizer.chat_template)
    return SmolVLMForConditionalGeneration(config), processor


FAMILY = register_family(VlmFamily(
    name="smolvlm", model_types=("smolvlm",), has_vision=True, processor_class="SmolVLMProcessor",
    processor_without_video=SmolVLMProcessorWithoutVideo, image_placeholder="<image>", image_budget=image_budget,
    nested_images=True,
    tiny=TinySpec(tokenizer="byte_fallback", chat_template=IDEFICS_CHAT, specials=SPECIALS, build=build_tiny),
))
