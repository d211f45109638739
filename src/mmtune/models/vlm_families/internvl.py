"""InternVL (transformers-native, e.g. InternVL2-1B / Vintern-1B converted): InternViT, pixel shuffle, a Qwen2
LM; `<img><IMG_CONTEXT>...</img>` per tile, tiles bounded by `model.vlm.max_tiles`."""

from __future__ import annotations

from typing import Any

from transformers import GotOcr2ImageProcessorPil, InternVLConfig, InternVLForConditionalGeneration, Qwen2Config

from mmtune.compat import InternVLProcessorWithoutVideo
from mmtune.config import VlmConfig
from mmtune.models.vlm_families import TinySizes, TinySpec, VlmFamily, register_family
from mmtune.models.vlm_families._chat import CHATML, QWEN_SPECIALS

NAMED = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
         "video_token": "<video>"}


def image_budget(processor: Any, vlm: VlmConfig) -> dict[str, Any]:
    # Its processor would otherwise cut every image into tiles.
    return {"crop_to_patches": vlm.max_tiles > 1, "max_patches": vlm.max_tiles, "min_patches": 1}


def build_tiny(tokenizer: Any, sizes: TinySizes) -> tuple[Any, Any]:
    text = Qwen2Config(**sizes.text(len(tokenizer)), eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                       pad_token_id=tokenizer.pad_token_id)
    seq_len = (sizes.image_size // sizes.patch_size) ** 2 // 4  # downsample_ratio 0.5 (pixel shuffle)
    vision = {**sizes.vision(), "image_size": [sizes.image_size] * 2, "patch_size": [sizes.patch_size] * 2}
    config = InternVLConfig(vision_config=vision, text_config=text, image_seq_length=seq_len,
                            image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"), downsample_ratio=0.5)
    # crop_to_patches off by default, as the processor would otherwise cut every image into up to 10 tiles.
    image_processor = GotOcr2ImageProcessorPil(size={"height": sizes.image_size, "width": sizes.image_size},
                                               crop_to_patches=False, min_patches=1, max_patches=4)
    processor = InternVLProcessorWithoutVideo(image_processor=image_processor, tokenizer=tokenizer,
                                              image_seq_length=seq_len, chat_template=tokenizer.chat_template)
    return InternVLForConditionalGeneration(config), processor


FAMILY = register_family(VlmFamily(
    name="internvl", model_types=("internvl",), has_vision=True, processor_class="InternVLProcessor",
    processor_without_video=InternVLProcessorWithoutVideo, image_placeholder="<IMG_CONTEXT>\n",
    image_budget=image_budget, remote_code_types={"internvl_chat": "InternVL2 (Vintern-1B)"},
    tiny=TinySpec(tokenizer="byte_level", chat_template=CHATML, specials=QWEN_SPECIALS + tuple(NAMED.values()),
                  named_specials=NAMED, build=build_tiny),
))
