"""VLM families: what mmtune knows about each generative VLM (or causal LM) architecture, one module per family.

A family module builds one `VlmFamily` and registers it with `register_family`: the config model types it
covers, whether it sees images, its processor (and the torchvision-free one compat.py has for it), what its chat
template writes for an image, the processor arguments that bound an image's token cost, whether the processor
takes the images per post, its default LoRA targets, whether its positions carry Qwen2-VL's rope shift, and how
mmtune.testing builds a tiny random checkpoint of it. Adding a family is one new module plus its test.

`family_of(config, name)` resolves a checkpoint's config. A text-only causal LM of a type no family covers loads
as `TEXT_LM` (any AutoModelForCausalLM works); a config with a vision part whose type no family covers is an
InputError, since it would load as a text-only LM and silently drop its images.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from transformers import AutoConfig, AutoProcessor
from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

from mmtune.compat import torchvision_available
from mmtune.config import VlmConfig
from mmtune.errors import InputError

# Attention and MLP projections of LLaMA/Qwen2-style decoders (every family here uses these names).
LANGUAGE_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# Config keys that hold a vision part, in transformers' native layouts and in remote-code ones (LLaVA's original
# `mm_vision_tower`, Phi-3-vision's `img_processor`, Qwen-VL's `visual`).
VISION_KEYS = ("vision_config", "vision_tower", "mm_vision_tower", "img_processor", "visual", "vision_encoder")


@dataclass(frozen=True)
class TinySizes:
    """The sizes of mmtune.testing's tiny models, which it passes to a family's tiny builder."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    max_positions: int
    image_size: int
    patch_size: int

    def text(self, vocab_size: int) -> dict[str, Any]:
        return {"vocab_size": vocab_size, "hidden_size": self.hidden, "num_hidden_layers": self.layers,
                "num_attention_heads": self.heads, "num_key_value_heads": self.heads,
                "intermediate_size": self.intermediate, "max_position_embeddings": self.max_positions}

    def vision(self) -> dict[str, Any]:
        return {"hidden_size": self.hidden, "num_hidden_layers": self.layers, "num_attention_heads": self.heads,
                "intermediate_size": self.intermediate, "image_size": self.image_size, "patch_size": self.patch_size}


@dataclass(frozen=True)
class TinySpec:
    """How mmtune.testing builds a tiny random checkpoint: it trains the tokenizer, then calls `build`."""

    # Byte-level BPE (Qwen2, InternVL) or SentencePiece-style BPE with byte fallback (LLaMA, LLaVA, Idefics3).
    tokenizer: Literal["byte_level", "byte_fallback"]
    # A chat template of the real checkpoint's shape; IMAGE stands where the family's image placeholder goes.
    chat_template: str
    specials: tuple[str, ...] = ()  # tokens that stay whole (chat and image tokens); byte-level: the first is eos
    named_specials: Mapping[str, str] = field(default_factory=dict)  # tokenizer attributes naming some of them
    # (tokenizer, sizes) -> the random model and its processor (the tokenizer for a text-only family)
    build: Callable[[Any, TinySizes], tuple[Any, Any]] | None = None


def _no_budget(processor: Any, vlm: VlmConfig) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class VlmFamily:
    name: str  # as `mmtune make-tiny` and messages spell it
    model_types: tuple[str, ...]  # the `model_type`s of the configs it covers
    has_vision: bool
    processor_class: str | None = None  # transformers' processor class; None: the tokenizer is the processor
    processor_without_video: type | None = None  # compat's subclass, where the real one needs torchvision
    image_placeholder: str = ""  # what its chat template writes for one image
    # (processor, model.vlm settings) -> processor arguments that bound each image's token cost
    image_budget: Callable[[Any, VlmConfig], dict[str, Any]] = _no_budget
    nested_images: bool = False  # the processor takes one list of images per post, not one flat list
    lora_targets: tuple[str, ...] = LANGUAGE_TARGETS  # the language model's default LoRA targets
    # Positions numbered in three rows from the images' grid (Qwen2-VL's mrope), the shift to plain numbering
    # kept in `model.model.rope_deltas`: a continuation after a cached prompt must add it.
    rope_deltas: bool = False
    remote_code_types: Mapping[str, str] = field(default_factory=dict)  # model type -> release, not loadable
    tiny: TinySpec | None = None


# Text-only causal LMs of any other type: every AutoModelForCausalLM with a chat template works.
TEXT_LM = VlmFamily(name="causal-lm", model_types=(), has_vision=False)

_FAMILIES: dict[str, VlmFamily] = {}


def register_family(family: VlmFamily) -> VlmFamily:
    """Add `family`; its name and each of its model types must be new (a config resolves to one family)."""
    claimed = {model_type: other.name for other in _FAMILIES.values() for model_type in other.model_types}
    clashes = [f"model type '{t}' of '{claimed[t]}'" for t in family.model_types if t in claimed]
    if family.name in _FAMILIES or clashes:
        raise ValueError(f"VLM family '{family.name}' is registered twice ({', '.join(clashes) or 'its name'})")
    _FAMILIES[family.name] = family
    return family


def families() -> list[VlmFamily]:
    """Every registered family, by name."""
    _discover()
    return sorted(_FAMILIES.values(), key=lambda family: family.name)


@functools.cache
def _discover() -> None:
    # Importing a family module runs its register_family; modules whose name starts with '_' are shared helpers.
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


def family_names() -> list[str]:
    return [family.name for family in families()]


def get_family(name: str) -> VlmFamily:
    for family in families():
        if family.name == name:
            return family
    raise KeyError(name)


def family_of(config: Any, name: str) -> VlmFamily:
    """The family of a checkpoint's config (`name`: the checkpoint, for messages); InputError when mmtune cannot
    run it: a remote-code format, or a vision part of no registered family."""
    model_type = getattr(config, "model_type", "")
    family = next((family for family in families() if model_type in family.model_types), TEXT_LM)
    for other in families():
        if model_type in other.remote_code_types:
            raise InputError(f"model.name: {name!r} is in {other.remote_code_types[model_type]}'s remote-code "
                             "format, whose model has its own forward; point model.name at its downloaded folder "
                             "(converted on first use) or convert it: mmtune convert internvl SRC DST")
    # A text-only family's model type with a vision part too (Phi-3.5-vision is a phi3 with `img_processor`).
    if not family.has_vision and has_vision_part(config):
        raise InputError(f"model.name: {name!r} is a vision-language model of type {model_type!r}, whose family "
                         f"mmtune does not support (supported: {', '.join(_vision_family_names())}); loaded as a "
                         "text-only LM it would drop its images")
    return family


def has_vision_part(config: Any) -> bool:
    keys = config.to_dict() if hasattr(config, "to_dict") else dict(vars(config))
    return (getattr(config, "model_type", "") in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
            or any(keys.get(key) for key in VISION_KEYS))


def load_processor(path_or_id: str, family: VlmFamily | None = None, **kwargs: Any) -> Any:
    """`AutoProcessor.from_pretrained`, or compat's torchvision-free subclass where the family needs one (the
    family is the checkpoint config's when not given)."""
    if family is None:
        family = family_of(AutoConfig.from_pretrained(path_or_id, **kwargs), path_or_id)
    if family.processor_without_video is not None and not torchvision_available():
        return family.processor_without_video.from_pretrained(path_or_id, **kwargs)
    return AutoProcessor.from_pretrained(path_or_id, **kwargs)


def _vision_family_names() -> list[str]:
    return [family.name for family in families() if family.has_vision]
