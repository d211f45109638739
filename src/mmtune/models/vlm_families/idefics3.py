"""Idefics3: a SigLIP tower, pixel shuffle, a LLaMA LM; images split into tiles plus the whole image, one list
of images per post."""

from __future__ import annotations

from typing import Any

from transformers import (
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3ImageProcessorPil,
    Idefics3Processor,
)

from mmtune.config import VlmConfig
from mmtune.models.vlm_families import TinySizes, TinySpec, VlmFamily, register_family
from mmtune.models.vlm_families._chat import IDEFICS_CHAT
from mmtune.models.vlm_families.llama import text_config

SPECIALS = (("<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>", "<|im_start|>")
            + tuple(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)))


def image_budget(processor: Any, vlm: VlmConfig) -> dict[str, Any]:
    return {"do_image_splitting": vlm.max_tiles > 1}


def tiny_parts(tokenizer: Any, sizes: TinySizes, image_processor_cls: Any, config_cls: Any) -> tuple[Any, Any, int]:
    """The config, image processor and tokens per image of a tiny Idefics3 or SmolVLM."""
    # Tiles of image_size px (real: 364/512), at most 2x2 of them plus the global image.
    image_processor = image_processor_cls(size={"longest_edge": 2 * sizes.image_size},
                                          max_image_size={"longest_edge": sizes.image_size})
    seq_len = (sizes.image_size // sizes.patch_size) ** 2 // 4  # scale_factor 2 shuffles 2x2 patches into one token
    text = text_config(tokenizer, sizes, eos_token_id=tokenizer.convert_tokens_to_ids("<end_of_utterance>"))
    config = config_cls(vision_config=sizes.vision(), text_config=text, scale_factor=2,
                        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), pad_token_id=tokenizer.pad_token_id)
    return config, image_processor, seq_len


def build_tiny(tokenizer: Any, sizes: TinySizes) -> tuple[Any, Any]:
    config, image_processor, seq_len = tiny_parts(tokenizer, sizes, Idefics3ImageProcessorPil, Idefics3Config)
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=seq_len,
                                  chat_template=tokenizer.chat_template)
    return Idefics3ForConditionalGeneration(config), processor


FAMILY = register_family(VlmFamily(
    name="idefics3", model_types=("idefics3",), has_vision=True, processor_class="Idefics3Processor",
    image_placeholder="<image>", image_budget=image_budget, nested_images=True,
    tiny=TinySpec(tokenizer="byte_fallback", chat_template=IDEFICS_CHAT, specials=SPECIALS, build=build_tiny),
))
