"""Write an InternVL2 chat checkpoint (`internvl_chat`) as transformers' native InternVL folder: config, weights,
processor (GotOcr2 image processor, the tokenizer with its image tokens named) and a ChatML chat template.

Nothing of the checkpoint's remote code runs: config.json is read as JSON, the weights with safetensors.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from transformers import (
    GenerationConfig,
    GotOcr2ImageProcessorPil,
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLVisionConfig,
)

from mmtune.compat import InternVLProcessorWithoutVideo, SavedProcessor
from mmtune.errors import InputError
from mmtune.models.internvl_chat.weights import LANGUAGE_MODELS, LanguageModel, native_weights
from mmtune.models.vlm_families._chat import CHATML
from mmtune.models.vlm_families.internvl import FAMILY, NAMED

MODEL_TYPE = "internvl_chat"
# The `template`s of InternVL2 / 2.5 / Vintern releases with a Qwen2 or InternLM2 model: all ChatML.
CHATML_TEMPLATES = ("Hermes-2", "internlm2-chat", "internvl2_5")
# What the originals' image transform normalizes with (ImageNet), whatever the image processor defaults are.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Original:
    path: Path
    config: dict[str, Any]
    lm: LanguageModel
    weight_files: tuple[Path, ...]


def is_internvl_chat(folder: Path) -> bool:
    """Whether `folder` holds a checkpoint in InternVL2's remote-code chat format."""
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type") == MODEL_TYPE
    except (OSError, ValueError, AttributeError):
        return False


def convert(src: Path, dst: Path) -> Path:
    """Write the native form of the chat checkpoint in `src` to `dst` (new or empty); InputError on bad input."""
    original = read_original(Path(src))
    dst = Path(dst)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise InputError(f"{dst}: {'is not empty' if dst.is_dir() else 'is a file'}; convert writes a new folder")
    write_native(original, dst)
    return dst


def read_original(src: Path) -> Original:
    """The checkpoint's config and weight files, checked for what the conversion supports."""
    if not src.is_dir():
        raise InputError(f"{src}: {'not a folder' if src.exists() else 'folder not found'}")
    if not is_internvl_chat(src):
        raise InputError(f"{src}: no config.json of model type {MODEL_TYPE!r} (an InternVL2 / InternVL2.5 / "
                         "Vintern chat checkpoint)")
    config = json.loads((src / "config.json").read_text(encoding="utf-8"))
    llm, vision = config.get("llm_config") or {}, config.get("vision_config") or {}
    architecture = (llm.get("architectures") or [llm.get("model_type", "?")])[0]
    if architecture not in LANGUAGE_MODELS:
        supported = "; ".join(f"{lm.architecture} ({lm.releases})" for lm in LANGUAGE_MODELS.values())
        raise InputError(f"{src}: its language model is {architecture}, which mmtune does not convert "
                         f"(supported: {supported})")
    _check_supported(src, config, llm, vision)
    return Original(src, config, LANGUAGE_MODELS[architecture], _weight_files(src))


def _check_supported(src: Path, config: dict[str, Any], llm: dict[str, Any], vision: dict[str, Any]) -> None:
    # Each of these would give a model that runs but computes something else than the original.
    checks = (
        ("ps_version", config.get("ps_version", "v1"), "'v2' (v1 leaves the shuffled grid transposed)",
         lambda value: value == "v2"),
        ("template", config.get("template"), f"one of {', '.join(CHATML_TEMPLATES)}",
         lambda value: value in CHATML_TEMPLATES),
        ("force_image_size", config.get("force_image_size"), "vision_config.image_size",
         lambda value: value in (None, vision.get("image_size"))),
        ("llm_config.bias", llm.get("bias", False), "false", lambda value: not value),
    )
    for key, value, supported, ok in checks:
        if not ok(value):
            raise InputError(f"{src}/config.json: {key} {value!r} is not supported by the conversion "
                             f"(supported: {supported})")


def _weight_files(src: Path) -> tuple[Path, ...]:
    index = src / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        return tuple(src / shard for shard in shards)
    if (src / "model.safetensors").is_file():
        return (src / "model.safetensors",)
    raise InputError(f"{src}: no model.safetensors (or model.safetensors.index.json); the conversion reads "
                     "safetensors weights only")


def write_native(original: Original, dst: Path) -> None:
    tokenizer = _tokenizer(original)
    config = native_config(original, tokenizer)
    model = _native_model(original, config)
    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dst)
    tokenizer.chat_template = CHATML.replace("IMAGE", FAMILY.image_placeholder)
    processor = InternVLProcessorWithoutVideo(image_processor=_image_processor(original), tokenizer=tokenizer,
                                              image_seq_length=config.image_seq_length,
                                              chat_template=tokenizer.chat_template)
    SavedProcessor(processor, "InternVLProcessor").save_pretrained(dst)
    _generation_config(original, tokenizer).save_pretrained(dst)


def native_config(original: Original, tokenizer: Any) -> InternVLConfig:
    config, vision = original.config, original.config["vision_config"]
    text = original.lm.text_config(original.config["llm_config"])
    # Named image tokens the vocabulary lacks (`<video>`) are appended by the tokenizer: the embeddings grow.
    text.vocab_size = max(text.vocab_size, len(tokenizer))
    ratio = config.get("downsample_ratio", 0.5)
    grid = vision["image_size"] // vision["patch_size"]
    native = InternVLConfig(
        vision_config=InternVLVisionConfig(
            hidden_size=vision["hidden_size"], intermediate_size=vision["intermediate_size"],
            num_attention_heads=vision["num_attention_heads"], num_hidden_layers=vision["num_hidden_layers"],
            image_size=vision["image_size"], patch_size=vision["patch_size"],
            num_channels=vision.get("num_channels", 3), hidden_act=vision.get("hidden_act", "gelu"),
            norm_type=vision.get("norm_type", "rms_norm"), layer_norm_eps=vision.get("layer_norm_eps", 1e-6),
            attention_bias=vision.get("qkv_bias", True), use_qk_norm=vision.get("qk_normalization", False),
            use_mean_pooling=True,  # InternViT has no final norm: the last layer's output as it is
        ),
        text_config=text, image_token_id=tokenizer.context_image_token_id, downsample_ratio=ratio,
        image_seq_length=int(grid * grid * ratio * ratio), vision_feature_layer=config.get("select_layer", -1),
        projector_hidden_act="gelu", tie_word_embeddings=text.tie_word_embeddings,
    )
    native.architectures = ["InternVLForConditionalGeneration"]
    native.dtype = config.get("torch_dtype") or config.get("dtype") or "bfloat16"
    return native


def _native_model(original: Original, config: InternVLConfig) -> InternVLForConditionalGeneration:
    with torch.device("meta"):  # the weights come from the checkpoint: no time or memory spent on an init
        model = InternVLForConditionalGeneration(config)
    expected = model.state_dict()
    state = dict(native_weights(_read_tensors(original), original.lm, config.text_config))
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    for name in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
        if name in state:
            state[name] = _grow_rows(state[name], config.text_config.vocab_size)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    missing, unexpected = sorted(set(expected) - set(state) - tied), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise InputError(f"{original.path}: weights that do not fit InternVL2's layout (missing after renaming: "
                         f"{', '.join(missing[:4]) or 'none'}; unexpected: {', '.join(unexpected[:4]) or 'none'})")
    wrong = [name for name, tensor in state.items() if tensor.shape != expected[name].shape]
    if wrong:
        raise InputError(f"{original.path}: tensor shapes do not match config.json ({', '.join(wrong[:4])})")
    model.load_state_dict(state, strict=False, assign=True)
    if config.tie_word_embeddings:
        model.tie_weights()
    return model


def _read_tensors(original: Original) -> Iterator[tuple[str, torch.Tensor]]:
    for path in original.weight_files:
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                yield key, handle.get_tensor(key)


def _grow_rows(weight: torch.Tensor, rows: int) -> torch.Tensor:
    # New token rows start at the mean row, as transformers' resize_token_embeddings does.
    if weight.shape[0] >= rows:
        return weight
    extra = weight.float().mean(0, keepdim=True).expand(rows - weight.shape[0], -1).to(weight.dtype)
    return torch.cat([weight, extra])


def _tokenizer(original: Original) -> Any:
    """The original tokenizer files read by transformers' own class of its language model, with InternVL's image
    tokens named (the processor finds them by name)."""
    try:
        tokenizer = original.lm.tokenizer_class.from_pretrained(original.path, extra_special_tokens=NAMED,
                                                                **dict(original.lm.tokenizer_options))
    except (OSError, ValueError, ImportError) as error:
        raise InputError(f"{original.path}: cannot read its tokenizer with {original.lm.tokenizer_class.__name__} "
                         f"({str(error).strip().splitlines()[0][:200]})") from None
    lacking = [token for token in NAMED.values() if token != NAMED["video_token"]
               and tokenizer.convert_tokens_to_ids(token) in (None, tokenizer.unk_token_id)]
    if lacking:
        raise InputError(f"{original.path}: its tokenizer has no {', '.join(lacking)} token")
    return tokenizer


def _image_processor(original: Original) -> GotOcr2ImageProcessorPil:
    """The originals' transform (RGB, bicubic resize to the tile size, ImageNet normalization); tiling (up to the
    release's max_dynamic_patch tiles and a thumbnail) off by default, as in mmtune's other InternVL folders:
    the VLM kinds set it per run (model.vlm.max_tiles), and 13 tiles of 256 tokens would not fit a T4 batch."""
    config = original.config
    size = config.get("force_image_size") or config["vision_config"]["image_size"]
    return GotOcr2ImageProcessorPil(
        size={"height": size, "width": size}, image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD),
        crop_to_patches=False, min_patches=config.get("min_dynamic_patch", 1),
        max_patches=config.get("max_dynamic_patch", 12),
    )


def _generation_config(original: Original, tokenizer: Any) -> GenerationConfig:
    # A chat turn ends at <|im_end|> (InternLM2's llm_config names </s>, which its chat never writes).
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    eos = original.config["llm_config"].get("eos_token_id")
    ends = list(dict.fromkeys(id_ for id_ in (end, *(eos if isinstance(eos, list) else [eos])) if id_ is not None))
    return GenerationConfig(eos_token_id=ends, pad_token_id=tokenizer.pad_token_id)
