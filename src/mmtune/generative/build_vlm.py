"""Assemble a LLaVA-style VLM from a vision encoder and a causal LM, saved as a standard transformers LLaVA.

The result is a `LlavaForConditionalGeneration` folder (config, weights, tokenizer with the image token, a
`LlavaProcessor` with a chat template), so `AutoModelForImageTextToText.from_pretrained(folder)` and
`AutoProcessor.from_pretrained(folder)` load it anywhere without mmtune. The projector is LLaVA's: two linear
layers with an activation between them (2-layer MLP + GELU by default), freshly initialised.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoTokenizer,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

from mmtune.config import BuildConfig
from mmtune.errors import InputError

log = logging.getLogger(__name__)

# LLaVA-1.5's conversation style. Why our own template and not the LM's: chat LMs' templates print
# `message['content']` as a string, while VLM processors pass lists of image/text blocks. The answer ends
# with the LM's end-of-sequence token so the model learns to stop; the prompt rendered alone is a prefix of
# prompt + answer, which TRL's prompt/completion collator relies on.
DEFAULT_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ message['role'] | upper }}: "
    "{%- if message['content'] is string -%}{{ ' ' + message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{ ' ' + IMAGE }}"
    "{%- elif part['type'] == 'text' -%}{{ ' ' + part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- if message['role'] == 'assistant' -%}{{ EOS }}{%- endif -%}"
    "{{ '\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}ASSISTANT:{%- endif -%}"
)


@dataclass(frozen=True)
class BuiltVlm:
    model: LlavaForConditionalGeneration
    processor: LlavaProcessor


def build_llava(build: BuildConfig, image_token: str = "<image>", dtype: torch.dtype = torch.float32,
                seed: int = 0) -> BuiltVlm:
    """A LLaVA model whose vision tower and LM carry the pretrained weights of `build.vision` and `build.llm`; the
    new projector is drawn from `seed` (the same parts and seed give the same model).

    Built directly in `dtype`: a 7B LLM assembled in fp32 would need its 28 GB twice over.
    """
    if not build.vision or not build.llm:
        raise InputError("build.vision and build.llm: both are needed to assemble a VLM (or set model.name "
                         "to an already built one)")
    vision_config = _vision_config(build.vision)
    llm = _load(AutoModelForCausalLM, build.llm, "build.llm", dtype)
    with _loading("build.llm", build.llm):
        tokenizer = AutoTokenizer.from_pretrained(build.llm)
    image_token_id = _add_image_token(tokenizer, image_token)
    strategy = _feature_select(build, vision_config)
    config = LlavaConfig(
        vision_config=vision_config, text_config=llm.config, image_token_index=image_token_id,
        projector_hidden_act=build.projector_act, vision_feature_layer=build.vision_feature_layer,
        vision_feature_select_strategy=strategy,
        tie_word_embeddings=llm.config.tie_word_embeddings,
    )
    model = _assemble(config, llm, dtype, seed)
    _load_vision_weights(model, build.vision, dtype)
    # Only grow: real LMs pad their embedding matrix past the tokenizer (Qwen2: 151936 rows for 151646 tokens), and
    # an added image token may land in a spare row. New rows start at the mean of the old ones (transformers' mean
    # resizing): a random row would make the image token's logit dominate before training.
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    model.config.text_config.pad_token_id = tokenizer.pad_token_id
    # Answers end with the stop token and the tokenizer's eos must be that token too: transformers' Trainer
    # overwrites the model's eos with the tokenizer's.
    tokenizer.eos_token = _stop_token(llm, tokenizer)
    model.generation_config = llm.generation_config
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    with _loading("build.vision", build.vision):
        image_processor = AutoImageProcessor.from_pretrained(build.vision)
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer,
        patch_size=vision_config.patch_size, vision_feature_select_strategy=strategy,
        num_additional_image_tokens=1 if strategy == "default" else 0, image_token=image_token,
        chat_template=_chat_template(build, image_token, tokenizer.eos_token),
    )
    model.config.image_seq_length = _check_image_path(model, processor)
    return BuiltVlm(model=model, processor=processor)


def save_vlm(built: BuiltVlm, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    built.model.save_pretrained(out)
    built.processor.save_pretrained(out)
    return out


@contextmanager
def _loading(key: str, name: str) -> Iterator[None]:
    try:
        yield
    except (OSError, ValueError) as error:  # a missing folder, an unknown Hub id, a broken config
        raise InputError(f"{key}: cannot load '{name}' ({_first_line(error)})") from None


def _vision_config(name: str) -> PretrainedConfig:
    with _loading("build.vision", name):
        config = AutoConfig.from_pretrained(name)
    config = getattr(config, "vision_config", None) or config  # CLIP/SigLIP: the vision half
    missing = [key for key in ("patch_size", "hidden_size", "image_size") if not hasattr(config, key)]
    if missing:
        raise InputError(f"build.vision: {type(config).__name__} has no {', '.join(missing)}; LLaVA needs a "
                         "patch-based vision transformer (SigLIP, CLIP, ViT, ...)")
    return config


def _load(model_cls: type, name: str, key: str, dtype: torch.dtype) -> PreTrainedModel:
    with _loading(key, name):
        return model_cls.from_pretrained(name, dtype=dtype)


def _add_image_token(tokenizer: object, image_token: str) -> int:
    if image_token not in tokenizer.get_vocab():
        tokenizer.add_tokens([image_token], special_tokens=True)
    if tokenizer.pad_token is None:  # many causal LMs have none; batching needs one
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer.convert_tokens_to_ids(image_token)


def _stop_token(llm: PreTrainedModel, tokenizer: object) -> str:
    """The token the LM stops generating at (chat LMs: the end-of-turn token), which answers must end with."""
    eos = llm.generation_config.eos_token_id
    eos = eos[0] if isinstance(eos, list) and eos else eos
    return tokenizer.convert_ids_to_tokens(eos) if isinstance(eos, int) else tokenizer.eos_token


def _feature_select(build: BuildConfig, vision_config: PretrainedConfig) -> str:
    if build.vision_feature_select != "auto":
        return build.vision_feature_select
    # SigLIP has no CLS token (every position is a patch); CLIP and ViT put one first.
    return "full" if vision_config.model_type.startswith("siglip") else "default"


def _load_vision_weights(model: LlavaForConditionalGeneration, name: str, dtype: torch.dtype) -> None:
    source = _load(AutoModel, name, "build.vision", dtype)
    tower = model.model.vision_tower
    if type(source) is not type(tower):
        source = getattr(source, "vision_model", None)
        if source is None:
            raise InputError(f"build.vision: cannot find the vision encoder inside {name}")
    missing, unexpected = tower.load_state_dict(source.state_dict(), strict=False)
    if missing:
        raise InputError(f"build.vision: {name} lacks vision tower weights ({', '.join(missing[:3])})")
    if unexpected:
        log.debug(f"build.vision: ignored {len(unexpected)} weights of {name}")


def _assemble(config: LlavaConfig, llm: PreTrainedModel, dtype: torch.dtype,
              seed: int) -> LlavaForConditionalGeneration:
    """The LLaVA of `config` around the loaded `llm`'s own modules: its shell is built on the meta device, so the LM
    is held once (a fresh random LM beside the loaded one would double the peak memory of a 7B build). The vision
    tower and the projector are built for real, the projector drawn from `seed` without touching the caller's
    random stream."""
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    model.model.language_model = llm.get_decoder() if hasattr(llm, "get_decoder") else llm.model
    model.lm_head = llm.get_output_embeddings()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.model.multi_modal_projector = LlavaMultiModalProjector(config).to(dtype)
        model.model.vision_tower = AutoModel.from_config(config.vision_config, dtype=dtype)
    on_meta = [name for name, tensor in [*model.named_parameters(), *model.named_buffers()] if tensor.is_meta]
    if on_meta:  # a LLaVA variant with parts this assembly does not know
        raise InputError(f"build.llm: cannot assemble a LLaVA around it ({', '.join(on_meta[:3])} not built)")
    return model


def _chat_template(build: BuildConfig, image_token: str, eos_token: str) -> str:
    if build.chat_template:
        path = Path(build.chat_template)
        if not path.is_file():
            raise InputError(f"build.chat_template: file not found: {path}")
        return path.read_text(encoding="utf-8")
    return ("{%- set IMAGE = " + repr(image_token) + " -%}{%- set EOS = " + repr(eos_token) + " -%}"
            + DEFAULT_CHAT_TEMPLATE)


def _check_image_path(model: LlavaForConditionalGeneration, processor: LlavaProcessor) -> int:
    """One forward pass on a blank image: fails at build time, not on the first training step, when the encoder's
    outputs do not fit LLaVA. Returns the number of image tokens per image."""
    from PIL import Image

    image = Image.new("RGB", (64, 64))
    inputs = processor(images=[image], text=[processor.image_token + " ?"], return_tensors="pt")
    try:
        with torch.no_grad():
            model(**inputs)
    except (RuntimeError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise InputError(f"build.vision: its outputs do not fit a LLaVA projector ({_first_line(error)}); "
                         "check build.vision_feature_select and build.vision_feature_layer") from None
    return int((inputs["input_ids"] == model.config.image_token_id).sum())


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
