"""Tiny random causal LMs and generative VLMs (2 layers, hidden 32) saved like Hub checkpoints.

`build_family(name)` builds one from its family's `TinySpec` (mmtune.models.vlm_families): a tokenizer trained
here on corpus.py's CORPUS (with the family's special tokens and a chat template of the same shape as the real
checkpoint's), then the family's `build` makes the random model and, for VLMs, the image processor and the
processor; `make_tiny` (tiny.py) saves them. Load back with `AutoModelForCausalLM` /
`AutoModelForImageTextToText.from_pretrained(dir)` and `vlm_families.load_processor` (which is
`AutoProcessor.from_pretrained` where torchvision is installed; see compat.py for why).

Tokenizers come in the two kinds real VLMs use: byte-level BPE (Qwen2, Qwen2-VL, InternVL2/Vintern) and
SentencePiece-style BPE with byte fallback (LLaMA, LLaVA, Idefics3/SmolVLM), whose byte pieces for unseen
characters are what the label-word check reports. Images are 32 px with 8 px patches (4 px for Qwen2-VL, whose
patches are merged 2x2), so each image costs 4 to 16 tokens.
"""

from __future__ import annotations

from typing import Any

from tokenizers import AddedToken, pre_tokenizers
from transformers import LlamaTokenizer, PreTrainedModel, Qwen2Tokenizer

from mmtune.compat import SavedProcessor
from mmtune.models.vlm_families import TinySizes, TinySpec, VlmFamily, get_family
from mmtune.testing import corpus
from mmtune.testing.corpus import HEADS, HIDDEN, INTERMEDIATE, LAYERS, VOCAB_SIZE

SIZES = TinySizes(hidden=HIDDEN, layers=LAYERS, heads=HEADS, intermediate=INTERMEDIATE, max_positions=1024,
                  image_size=32, patch_size=8)


def build_family(name: str) -> tuple[PreTrainedModel, list[Any]]:
    """The random model of VLM family `name` and the parts to save beside it (processor or tokenizer)."""
    family = get_family(name)
    spec = family.tiny
    if spec is None or spec.build is None:
        raise ValueError(f"VLM family '{name}' declares no tiny builder")
    model, processor = spec.build(_tokenizer(spec, family), SIZES)
    if family.processor_class and type(processor).__name__ != family.processor_class:
        processor = SavedProcessor(processor, family.processor_class)
    return model, [processor]


def _tokenizer(spec: TinySpec, family: VlmFamily) -> Any:
    template = spec.chat_template.replace("IMAGE", family.image_placeholder)
    if spec.tokenizer == "byte_level":
        return byte_level_tokenizer(list(spec.specials), dict(spec.named_specials), template)
    return byte_fallback_tokenizer(list(spec.specials), template)


def byte_level_tokenizer(specials: list[str], named: dict[str, str], chat_template: str) -> Qwen2Tokenizer:
    """Qwen2's byte-level BPE trained on CORPUS; every byte is a piece, so nothing is unknown."""
    pipeline = Qwen2Tokenizer().backend_tokenizer
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    words = corpus.words(pipeline)
    merges = corpus.learn_merges([(list(w), n) for w, n in sorted(words.items())], lambda a, b: a + b,
                                 VOCAB_SIZE - len(alphabet))
    vocab = corpus.numbered(alphabet + [a + b for a, b in merges] + specials)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, eos_token=specials[0], pad_token=specials[0],
                               unk_token=None, extra_special_tokens=named or specials[1:], chat_template=chat_template)
    # Named tokens (InternVL's image tokens) replace the list: the chat tokens must stay unsplittable too.
    tokenizer.add_tokens([AddedToken(token, special=True, normalized=False) for token in specials])
    return tokenizer


def byte_fallback_tokenizer(extra: list[str], chat_template: str) -> LlamaTokenizer:
    """LLaMA's BPE with byte fallback: the Vietnamese letters and learned merges are pieces, any other character
    (emoji, CJK) becomes <0xNN> byte pieces, as in SentencePiece vocabularies."""
    pipeline = LlamaTokenizer().backend_tokenizer
    specials = ["<unk>", "<s>", "</s>"]
    letters = sorted(set(corpus.alphabet(lowercase=False)) | {"▁"})
    split = [([c for c in w if c in letters] or ["▁"], n) for w, n in sorted(corpus.words(pipeline).items())]
    bytes_ = [f"<0x{i:02X}>" for i in range(256)]
    merges = corpus.learn_merges(split, lambda a, b: a + b, VOCAB_SIZE - len(letters) - len(bytes_))
    vocab = corpus.numbered(specials + bytes_ + letters + [a + b for a, b in merges] + extra)
    return LlamaTokenizer(vocab=vocab, merges=merges, pad_token="<unk>", chat_template=chat_template,
                          extra_special_tokens=extra or None)
