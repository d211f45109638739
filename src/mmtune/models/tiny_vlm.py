"""Tiny random causal LMs and generative VLMs (2 layers, hidden 32) saved like Hub checkpoints.

Registered in `tiny.py`'s FAMILIES, so `make_tiny(family, dir)` / `mmtune make-tiny` write them. Each folder
holds config.json + model.safetensors, a tokenizer trained here on tiny.py's corpus (with the family's special
tokens and a chat template of the same shape as the real checkpoint's), and for VLMs the image processor and
processor_config.json naming the real processor class. Load back with `AutoModelForCausalLM` /
`AutoModelForImageTextToText.from_pretrained(dir)` and `mmtune.compat.load_processor(dir)` (which is
`AutoProcessor.from_pretrained` where torchvision is installed; see compat.py for why).

Tokenizers come in the two kinds real VLMs use: byte-level BPE (Qwen2, Qwen2-VL, InternVL2/Vintern) and
SentencePiece-style BPE with byte fallback (LLaMA, LLaVA, Idefics3/SmolVLM), whose byte pieces for unseen
characters are what the label-word check reports. Images are 32 px with 8 px patches (4 px for Qwen2-VL, whose
patches are merged 2x2), so each image costs 4 to 16 tokens.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, pre_tokenizers
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    GotOcr2ImageProcessorPil,
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3ImageProcessorPil,
    Idefics3Processor,
    InternVLConfig,
    InternVLForConditionalGeneration,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaTokenizer,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedModel,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2Tokenizer,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessorPil,
    SmolVLMConfig,
    SmolVLMForConditionalGeneration,
    SmolVLMImageProcessorPil,
)

from mmtune import compat
from mmtune.models.tiny import CORPUS, HEADS, HIDDEN, INTERMEDIATE, LAYERS, VOCAB_SIZE, _learn_merges, _numbered

VLM_FAMILIES: tuple[str, ...] = ("qwen2", "llama", "llava", "idefics3", "smolvlm", "qwen2-vl", "qwen2.5-vl",
                                 "internvl")
IMAGE_SIZE = 32
PATCH_SIZE = 8
MAX_POSITIONS = 1024

# Chat templates of the real checkpoints' shape: ChatML (Qwen, InternVL2), "USER: ... ASSISTANT:" (LLaVA-1.5),
# "User: ...<end_of_utterance>\nAssistant:" (Idefics3, SmolVLM). IMAGE is replaced by the family's placeholder.
_CONTENT = ("{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
            "{% if c['type'] == 'image' %}IMAGE{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
            "{% endfor %}{% endif %}")
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n" + _CONTENT + "<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
LLAVA_CHAT = ("{% for m in messages %}{% if m['role'] == 'system' %}" + _CONTENT + "\n"
              "{% elif m['role'] == 'user' %}USER: " + _CONTENT + " "
              "{% else %}ASSISTANT: " + _CONTENT + "</s>{% endif %}{% endfor %}"
              "{% if add_generation_prompt %}ASSISTANT:{% endif %}")
IDEFICS_CHAT = ("<|im_start|>{% for m in messages %}{{ m['role'] | capitalize }}: " + _CONTENT +
                "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}")


def _text_sizes(vocab_size: int) -> dict[str, Any]:
    return {"vocab_size": vocab_size, "hidden_size": HIDDEN, "num_hidden_layers": LAYERS,
            "num_attention_heads": HEADS, "num_key_value_heads": HEADS, "intermediate_size": INTERMEDIATE,
            "max_position_embeddings": MAX_POSITIONS}


def _vision_sizes(image_size: int = IMAGE_SIZE) -> dict[str, Any]:
    return {"hidden_size": HIDDEN, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
            "intermediate_size": INTERMEDIATE, "image_size": image_size, "patch_size": PATCH_SIZE}


# ---- tokenizers -------------------------------------------------------------------------------------------


def _byte_level_tokenizer(specials: list[str], named: dict[str, str], chat_template: str) -> Qwen2Tokenizer:
    """Qwen2's byte-level BPE trained on CORPUS; every byte is a piece, so nothing is unknown."""
    pipeline = Qwen2Tokenizer().backend_tokenizer
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    words = _pretokenized(pipeline)
    merges = _learn_merges([(list(w), n) for w, n in sorted(words.items())], lambda a, b: a + b,
                           VOCAB_SIZE - len(alphabet))
    vocab = _numbered(alphabet + [a + b for a, b in merges] + specials)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, eos_token=specials[0], pad_token=specials[0],
                               unk_token=None, extra_special_tokens=named or specials[1:], chat_template=chat_template)
    # Named tokens (InternVL's image tokens) replace the list: the chat tokens must stay unsplittable too.
    tokenizer.add_tokens([AddedToken(token, special=True, normalized=False) for token in specials])
    return tokenizer


def _byte_fallback_tokenizer(extra: list[str], chat_template: str) -> LlamaTokenizer:
    """LLaMA's BPE with byte fallback: the Vietnamese letters and learned merges are pieces, any other character
    (emoji, CJK) becomes <0xNN> byte pieces, as in SentencePiece vocabularies."""
    from mmtune.models.tiny import _alphabet

    pipeline = LlamaTokenizer().backend_tokenizer
    specials = ["<unk>", "<s>", "</s>"]
    letters = sorted(set(_alphabet(lowercase=False)) | {"▁"})
    words = {w: n for w, n in _pretokenized(pipeline).items()}
    split = [([c for c in w if c in letters] or ["▁"], n) for w, n in sorted(words.items())]
    bytes_ = [f"<0x{i:02X}>" for i in range(256)]
    merges = _learn_merges(split, lambda a, b: a + b, VOCAB_SIZE - len(letters) - len(bytes_))
    vocab = _numbered(specials + bytes_ + letters + [a + b for a, b in merges] + extra)
    tokenizer = LlamaTokenizer(vocab=vocab, merges=merges, pad_token="<unk>", chat_template=chat_template,
                               extra_special_tokens=extra or None)
    return tokenizer


def _pretokenized(pipeline: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in CORPUS:
        text = pipeline.normalizer.normalize_str(line) if pipeline.normalizer else line
        for word, _ in pipeline.pre_tokenizer.pre_tokenize_str(text):
            counts[word] = counts.get(word, 0) + 1
    return counts


QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QWEN_VL_SPECIALS = QWEN_SPECIALS + ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
INTERNVL_NAMED = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
                  "video_token": "<video>"}
IDEFICS_EXTRA = (["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>", "<|im_start|>"]
                 + [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)])


# ---- families ---------------------------------------------------------------------------------------------


class SavedProcessor:
    """Saves a processor in the Hub layout: processor_config.json names the real class (e.g. Qwen2VLProcessor)
    even when a torchvision-free subclass from compat.py built it."""

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


def _build_qwen2() -> tuple[PreTrainedModel, list[Any]]:
    tokenizer = _byte_level_tokenizer(QWEN_SPECIALS, {}, CHATML.replace("IMAGE", ""))
    config = Qwen2Config(**_text_sizes(len(tokenizer)), eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    return Qwen2ForCausalLM(config), [tokenizer]


def _build_llama() -> tuple[PreTrainedModel, list[Any]]:
    tokenizer = _byte_fallback_tokenizer([], LLAVA_CHAT.replace("IMAGE", ""))
    config = LlamaConfig(**_text_sizes(len(tokenizer)), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return LlamaForCausalLM(config), [tokenizer]


def _build_llava() -> tuple[PreTrainedModel, list[Any]]:
    tokenizer = _byte_fallback_tokenizer(["<image>"], LLAVA_CHAT.replace("IMAGE", "<image>\n"))
    text = LlamaConfig(**_text_sizes(len(tokenizer)), bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    vision = CLIPVisionConfig(**_vision_sizes(), projection_dim=HIDDEN)
    patches = (IMAGE_SIZE // PATCH_SIZE) ** 2
    config = LlavaConfig(vision_config=vision, text_config=text, vision_feature_layer=-1,
                         image_token_index=tokenizer.convert_tokens_to_ids("<image>"), image_seq_length=patches)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIZE},
                                            crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH_SIZE,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=tokenizer.chat_template)
    return LlavaForConditionalGeneration(config), [processor]


def _idefics_parts(image_processor_cls: Any) -> tuple[Any, Any, int]:
    tokenizer = _byte_fallback_tokenizer(IDEFICS_EXTRA, IDEFICS_CHAT.replace("IMAGE", "<image>"))
    # Tiles of IMAGE_SIZE px (real: 364/512), at most 2x2 of them plus the global image.
    image_processor = image_processor_cls(size={"longest_edge": 2 * IMAGE_SIZE},
                                          max_image_size={"longest_edge": IMAGE_SIZE})
    image_seq_len = (IMAGE_SIZE // PATCH_SIZE) ** 2 // 4  # scale_factor 2 shuffles 2x2 patches into one token
    return tokenizer, image_processor, image_seq_len


def _idefics_config(config_cls: Any, tokenizer: Any) -> Any:
    text = LlamaConfig(**_text_sizes(len(tokenizer)), bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.convert_tokens_to_ids("<end_of_utterance>"),
                       pad_token_id=tokenizer.pad_token_id)
    return config_cls(vision_config=_vision_sizes(), text_config=text, scale_factor=2,
                      image_token_id=tokenizer.convert_tokens_to_ids("<image>"), pad_token_id=tokenizer.pad_token_id)


def _build_idefics3() -> tuple[PreTrainedModel, list[Any]]:
    tokenizer, image_processor, seq_len = _idefics_parts(Idefics3ImageProcessorPil)
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=seq_len,
                                  chat_template=tokenizer.chat_template)
    return Idefics3ForConditionalGeneration(_idefics_config(Idefics3Config, tokenizer)), [processor]


def _build_smolvlm() -> tuple[PreTrainedModel, list[Any]]:
    tokenizer, image_processor, seq_len = _idefics_parts(SmolVLMImageProcessorPil)
    processor = compat.SmolVLMProcessorWithoutVideo(image_processor=image_processor, tokenizer=tokenizer,
                                                    image_seq_len=seq_len, chat_template=tokenizer.chat_template)
    model = SmolVLMForConditionalGeneration(_idefics_config(SmolVLMConfig, tokenizer))
    return model, [SavedProcessor(processor, "SmolVLMProcessor")]


def _qwen_vl_parts(config_cls: Any, model_cls: Any, processor_cls: Any, class_name: str,
                   vision: dict[str, Any]) -> tuple[PreTrainedModel, list[Any]]:
    placeholder = "<|vision_start|><|image_pad|><|vision_end|>"
    tokenizer = _byte_level_tokenizer(QWEN_VL_SPECIALS, {}, CHATML.replace("IMAGE", placeholder))
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    head_dim = HIDDEN // HEADS
    # mrope sections (temporal, height, width) cover head_dim / 2 rotary frequencies.
    text = {**_text_sizes(len(tokenizer)), "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                                                "mrope_section": [2, 3, 3]},
            "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"), "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": None}
    assert sum(text["rope_parameters"]["mrope_section"]) == head_dim // 2
    config = config_cls(text_config=text, vision_config=vision, **ids, pad_token_id=tokenizer.pad_token_id,
                        bos_token_id=None)
    patch = vision["patch_size"]
    # At most IMAGE_SIZE x IMAGE_SIZE pixels: (32/4)^2 = 64 patches, merged 2x2 into 16 tokens per image.
    image_processor = Qwen2VLImageProcessorPil(patch_size=patch, merge_size=2, temporal_patch_size=2,
                                               size={"shortest_edge": (2 * patch) ** 2,
                                                     "longest_edge": IMAGE_SIZE * IMAGE_SIZE})
    processor = processor_cls(image_processor=image_processor, tokenizer=tokenizer,
                              chat_template=tokenizer.chat_template)
    return model_cls(config), [SavedProcessor(processor, class_name)]


def _build_qwen2_vl() -> tuple[PreTrainedModel, list[Any]]:
    vision = {"depth": LAYERS, "embed_dim": HIDDEN, "hidden_size": HIDDEN, "num_heads": HEADS, "mlp_ratio": 2,
              "patch_size": 4, "spatial_merge_size": 2, "temporal_patch_size": 2}
    return _qwen_vl_parts(Qwen2VLConfig, Qwen2VLForConditionalGeneration, compat.Qwen2VLProcessorWithoutVideo,
                          "Qwen2VLProcessor", vision)


def _build_qwen2_5_vl() -> tuple[PreTrainedModel, list[Any]]:
    vision = {"depth": LAYERS, "hidden_size": HIDDEN, "out_hidden_size": HIDDEN, "intermediate_size": INTERMEDIATE,
              "num_heads": HEADS, "patch_size": 4, "spatial_merge_size": 2, "temporal_patch_size": 2,
              "window_size": 16, "fullatt_block_indexes": [1]}
    return _qwen_vl_parts(Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration,
                          compat.Qwen2_5_VLProcessorWithoutVideo, "Qwen2_5_VLProcessor", vision)


def _build_internvl() -> tuple[PreTrainedModel, list[Any]]:
    # InternVL2 / Vintern-1B: InternViT + Qwen2 (byte-level BPE, ChatML), <img><IMG_CONTEXT>...</img> per tile.
    tokenizer = _byte_level_tokenizer(QWEN_SPECIALS + list(INTERNVL_NAMED.values()), INTERNVL_NAMED,
                                      CHATML.replace("IMAGE", "<IMG_CONTEXT>\n"))
    text = Qwen2Config(**_text_sizes(len(tokenizer)), eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                       pad_token_id=tokenizer.pad_token_id)
    seq_len = (IMAGE_SIZE // PATCH_SIZE) ** 2 // 4  # downsample_ratio 0.5 (pixel shuffle)
    vision = {**_vision_sizes(), "image_size": [IMAGE_SIZE, IMAGE_SIZE], "patch_size": [PATCH_SIZE, PATCH_SIZE]}
    config = InternVLConfig(vision_config=vision, text_config=text, image_seq_length=seq_len,
                            image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"), downsample_ratio=0.5)
    # crop_to_patches off by default, as the processor would otherwise cut every image into up to 10 tiles.
    image_processor = GotOcr2ImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                                               crop_to_patches=False, min_patches=1, max_patches=4)
    processor = compat.InternVLProcessorWithoutVideo(image_processor=image_processor, tokenizer=tokenizer,
                                                     image_seq_length=seq_len, chat_template=tokenizer.chat_template)
    return InternVLForConditionalGeneration(config), [SavedProcessor(processor, "InternVLProcessor")]


BUILDERS: dict[str, Callable[[], tuple[PreTrainedModel, list[Any]]]] = {
    "qwen2": _build_qwen2,
    "llama": _build_llama,
    "llava": _build_llava,
    "idefics3": _build_idefics3,
    "smolvlm": _build_smolvlm,
    "qwen2-vl": _build_qwen2_vl,
    "qwen2.5-vl": _build_qwen2_5_vl,
    "internvl": _build_internvl,
}
