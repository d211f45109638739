"""LLaVA-1.5 style VLMs (also what `mmtune build-vlm` assembles): a CLIP/SigLIP tower, a projector, a LLaMA-style
LM; one `<image>` token per image, expanded by the processor."""

from __future__ import annotations

from typing import Any

from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)

from mmtune.models.vlm_families import TinySizes, TinySpec, VlmFamily, register_family
from mmtune.models.vlm_families._chat import LLAVA_CHAT
from mmtune.models.vlm_families.llama import text_config


def build_tiny(tokenizer: Any, sizes: TinySizes) -> tuple[Any, Any]:
    vision = CLIPVisionConfig(**sizes.vision(), projection_dim=sizes.hidden)
    patches = (sizes.image_size // sizes.patch_size) ** 2
    config = LlavaConfig(vision_config=vision, text_config=text_config(tokenizer, sizes), vision_feature_layer=-1,
                         image_token_index=tokenizer.convert_tokens_to_ids("<image>"), image_seq_length=patches)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": sizes.image_size},
                                            crop_size={"height": sizes.image_size, "width": sizes.image_size})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=sizes.patch_size,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=tokenizer.chat_template)
    return LlavaForConditionalGeneration(config), processor


FAMILY = register_family(VlmFamily(
    name="llava", model_types=("llava",), has_vision=True, processor_class="LlavaProcessor",
    image_placeholder="<image>\n",
    tiny=TinySpec(tokenizer="byte_fallback", chat_template=LLAVA_CHAT, specials=("<image>",), build=build_tiny),
))
