"""The one compatibility module: every workaround for a library version lives here, with the versions it is for.

1. VLM processors without torchvision (transformers 5.x, checked on 5.23 and 5.24). Qwen2-VL, Qwen2.5-VL,
   InternVL and SmolVLM processors take a video processor, and video processors need torchvision, which mmtune
   does not require (on PyPI it does not even import beside torch 2.13). ProcessorMixin takes its sub-processors
   from the names in `__init__`'s signature, so a subclass whose `__init__` has no `video_processor` builds and
   reloads with the image processor and tokenizer only. The subclass must name `image_seq_length` /
   `image_seq_len` as real arguments: `from_pretrained` keeps only saved kwargs that appear in the signature,
   and without them the reload falls back to the defaults ("Image features and image tokens do not match").
   SmolVLM's `apply_chat_template` also reads `num_frames`/`fps` from the video processor; images need neither.
   `load_processor` uses these subclasses only where torchvision is missing.
2. 4-bit layers narrower than a quantization block on the CPU (bitsandbytes 0.50.2). In eval mode without
   gradients, Linear4bit repacks its weight for the AVX512-bf16 CPU kernel, which reshapes the block scales to
   [out, in // blocksize] and fails for in_features < blocksize (64). Real checkpoints have no such layers;
   tiny test models (hidden 32) do. `keep_narrow_4bit_layers_unpacked` turns the repacking off for them only.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from torch import nn
from transformers import (
    AutoConfig,
    AutoProcessor,
    InternVLProcessor,
    ProcessorMixin,
    Qwen2_5_VLProcessor,
    Qwen2VLProcessor,
    SmolVLMProcessor,
)


class Qwen2VLProcessorWithoutVideo(Qwen2VLProcessor):
    def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


class Qwen2_5_VLProcessorWithoutVideo(Qwen2_5_VLProcessor):  # noqa: N801 (transformers' own spelling)
    def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


class InternVLProcessorWithoutVideo(InternVLProcessor):
    def __init__(self, image_processor: Any = None, tokenizer: Any = None, image_seq_length: int = 256,
                 chat_template: str | None = None, **kwargs: Any) -> None:
        super().__init__(image_processor, tokenizer, None, image_seq_length=image_seq_length,
                         chat_template=chat_template, **kwargs)


class SmolVLMProcessorWithoutVideo(SmolVLMProcessor):
    def __init__(self, image_processor: Any = None, tokenizer: Any = None, image_seq_len: int = 169,
                 chat_template: str | None = None, **kwargs: Any) -> None:
        super().__init__(image_processor, tokenizer, None, image_seq_len=image_seq_len,
                         chat_template=chat_template, **kwargs)

    def apply_chat_template(self, conversation: Any, chat_template: str | None = None, **kwargs: Any) -> Any:
        # SmolVLMProcessor's version only adds video frame defaults read from the (absent) video processor.
        return ProcessorMixin.apply_chat_template(self, conversation, chat_template, **kwargs)


WITHOUT_VIDEO: dict[str, type[ProcessorMixin]] = {
    "Qwen2VLProcessor": Qwen2VLProcessorWithoutVideo,
    "Qwen2_5_VLProcessor": Qwen2_5_VLProcessorWithoutVideo,
    "InternVLProcessor": InternVLProcessorWithoutVideo,
    "SmolVLMProcessor": SmolVLMProcessorWithoutVideo,
}


def torchvision_available() -> bool:
    return importlib.util.find_spec("torchvision") is not None


def load_processor(path_or_id: str, **kwargs: Any) -> Any:
    """`AutoProcessor.from_pretrained`, or the torchvision-free subclass for the processors that need it."""
    name = processor_class_name(path_or_id, **kwargs)
    if name in WITHOUT_VIDEO and not torchvision_available():
        return WITHOUT_VIDEO[name].from_pretrained(path_or_id, **kwargs)
    return AutoProcessor.from_pretrained(path_or_id, **kwargs)


def processor_class_name(path_or_id: str, **kwargs: Any) -> str | None:
    """The processor class a checkpoint names (processor_config.json, else its model type's default)."""
    folder = Path(path_or_id)
    for file in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        if (folder / file).is_file():
            name = json.loads((folder / file).read_text(encoding="utf-8")).get("processor_class")
            if name:
                return str(name)
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    try:
        model_type = AutoConfig.from_pretrained(path_or_id, **kwargs).model_type
    except (OSError, ValueError):
        return None
    return PROCESSOR_MAPPING_NAMES.get(model_type)


def keep_narrow_4bit_layers_unpacked(model: nn.Module) -> int:
    """Turn bitsandbytes' CPU repacking off in 4-bit layers narrower than a block; returns how many."""
    try:
        import bitsandbytes as bnb
    except ImportError:
        return 0
    changed = 0
    for module in model.modules():
        state = getattr(getattr(module, "weight", None), "quant_state", None)
        if isinstance(module, bnb.nn.Linear4bit) and state is not None and module.in_features < state.blocksize:
            module.support_avx512bf16_for_cpu = False
            changed += 1
    return changed
