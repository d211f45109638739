"""Work-arounds for behaviour of the libraries mmtune builds on; each names the versions that need it.

The only module allowed to reach into other libraries' objects. Keep each fix small, say why, and
delete it when the versions that need it are no longer supported.

VLM processors without torchvision (transformers 5.x, checked on 5.23 and 5.24): Qwen2-VL, Qwen2.5-VL,
InternVL and SmolVLM processors take a video processor, and video processors need torchvision, which mmtune
does not require (on PyPI it does not even import beside torch 2.13). ProcessorMixin takes its sub-processors
from the names in `__init__`'s signature, so a subclass whose `__init__` has no `video_processor` builds and
reloads with the image processor and tokenizer only. The subclass must name `image_seq_length` /
`image_seq_len` as real arguments: `from_pretrained` keeps only saved kwargs that appear in the signature,
and without them the reload falls back to the defaults ("Image features and image tokens do not match").
SmolVLM's `apply_chat_template` also reads `num_frames`/`fps` from the video processor; images need neither.
Each VLM family names its subclass (mmtune.models.vlm_families), used only where torchvision is missing.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

from torch import nn
from transformers import (
    InternVLProcessor,
    ProcessorMixin,
    Qwen2_5_VLProcessor,
    Qwen2VLProcessor,
    SmolVLMProcessor,
)


def keep_bnb_4bit_training_layout(model: nn.Module) -> int:
    """Stop bitsandbytes from repacking 4-bit weights for CPU inference; returns how many layers it touched.

    bitsandbytes 0.50 (`Linear4bit.forward`), on CPUs with AVX512-BF16, converts a 4-bit weight in place to
    an inference-only packed layout the first time the layer runs in eval mode without gradients. A training
    loop evaluates between epochs, so later training steps would run on that layout, and the conversion
    fails outright for layers narrower than the quantization block (64), as in tiny test models. The layer
    exposes the switch as an attribute; it is set per layer, nothing global is changed.
    """
    touched = 0
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
            touched += 1
    return touched


def cache_accelerate_lomo_check() -> None:
    """Answer accelerate's "is lomo_optim installed?" once per process instead of twice per optimizer step.

    accelerate 1.15 (`AcceleratedOptimizer.step`) calls `is_lomo_available()`, a search of sys.path and the
    package metadata, twice on every step: about 0.1 ms, which is 4% of a head-only step on cached
    features (benchmarks/loop_overhead.py). What is installed does not change while a run trains.
    """
    import accelerate.optimizer as accelerated_optimizer

    check = accelerated_optimizer.is_lomo_available
    if not hasattr(check, "cache_info"):
        accelerated_optimizer.is_lomo_available = functools.cache(check)


def allow_mixed_precision(mixed_precision: str) -> None:
    """Let the next `Accelerator(mixed_precision=...)` of this process take another precision than an earlier one.

    accelerate 1.15 keeps one AcceleratorState per process and refuses an Accelerator of another mixed precision
    (ValueError "AcceleratorState has already been initialized and cannot be changed"). `mmtune predict
    ENSEMBLE.json` loads, one after another, models of runs trained with different `train.mixed_precision`, and
    a notebook may train such runs one after another (`api.fit`).
    Only the precision's state is dropped; the processes' state (PartialState: a launcher's process group) stays.
    """
    from accelerate.state import AcceleratorState

    shared = AcceleratorState._shared_state
    if shared and shared.get("_mixed_precision") != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)


def hub_offline_for_imported_libraries() -> None:
    """Offline mode also for the Hugging Face libraries imported before mmtune.hub found the Hub unreachable.

    huggingface_hub 2.4 reads HF_HUB_OFFLINE once, at import, into `constants.HF_HUB_OFFLINE`, which its
    requests and transformers 5.x's loaders (`is_offline_mode()`) read on every call; datasets 4.x copies it
    into `datasets.config.HF_HUB_OFFLINE` at its own import. Setting the variable reaches only later imports.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    for name in ("huggingface_hub.constants", "datasets.config"):
        module = sys.modules.get(name)
        if module is not None:
            module.HF_HUB_OFFLINE = True


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


class SavedProcessor:
    """Saves a processor in the Hub layout: processor_config.json names the real class (e.g. Qwen2VLProcessor)
    even when one of the torchvision-free subclasses here built it."""

    def __init__(self, processor: Any, class_name: str) -> None:
        self.processor = processor
        self.class_name = class_name

    def save_pretrained(self, out: Path | str) -> None:
        self.processor.save_pretrained(out)
        for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
            path = Path(out) / name
            if path.exists():
                data = json.loads(path.read_text(encoding="utf-8"))
                if "processor_class" in data:
                    data["processor_class"] = self.class_name
                    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")


def torchvision_available() -> bool:
    return importlib.util.find_spec("torchvision") is not None
