"""Tiny random models of real architectures, saved like Hub checkpoints, for fast offline tests and demos.

`make_tiny(family, out_dir, seed)` writes a config and random weights (2 layers, hidden 32), a tokenizer trained
here on a small Vietnamese + English corpus, and the image processor into one folder, in the layout of a Hub
checkpoint (config.json, model.safetensors, tokenizer.json + tokenizer_config.json, preprocessor_config.json).
`AutoModel`, `AutoTokenizer`, `AutoImageProcessor` and `AutoProcessor.from_pretrained(folder)` load it offline,
through the code path a user's checkpoint takes.

Why the tokenizers are the family's own transformers class (BertTokenizer, CLIPTokenizer, XLMRobertaTokenizer)
rather than a generic `PreTrainedTokenizerFast`: in transformers 5 such a class rebuilds its normalizer and
pre-tokenizer from its own arguments on reload and takes only the vocabulary (and merges) from tokenizer.json.
Training through the family's own pipeline keeps save and reload identical, and the reloaded tokenizer behaves
like the real checkpoint's (BERT returns token_type_ids, CLIP adds its start and end tokens). SigLIP's class
needs sentencepiece, which mmtune does not require, so SigLIP gets the generic `TokenizersBackend`.

The merges are learned in corpus.py (see why there); the unigram trainer is only made canonical (see
`_canonical_unigram`). Causal LMs and generative VLMs are built by tiny_vlm.py from their family's record
(mmtune.models.vlm_families).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    BertConfig,
    BertModel,
    BertTokenizer,
    CLIPConfig,
    CLIPImageProcessorPil,
    CLIPModel,
    CLIPTokenizer,
    ConvNextConfig,
    ConvNextImageProcessorPil,
    ConvNextModel,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    SiglipConfig,
    SiglipImageProcessorPil,
    SiglipModel,
    ViltConfig,
    ViltImageProcessorPil,
    ViltModel,
    ViTConfig,
    ViTImageProcessorPil,
    ViTModel,
    XLMRobertaConfig,
    XLMRobertaModel,
    XLMRobertaTokenizer,
)

from mmtune.errors import InputError
from mmtune.models.vlm_families import family_names
from mmtune.testing import corpus
from mmtune.testing.corpus import HEADS, HIDDEN, INTERMEDIATE, LAYERS, VOCAB_SIZE
from mmtune.testing.tiny_internvl_chat import ORIGINAL_LAYOUTS
from mmtune.testing.tiny_vlm import build_family

TEXT_MAX_LENGTH = 128
# ViLT's real text limit (bert-base-uncased's positions cut to 40); kept so that truncation gets exercised.
VILT_MAX_LENGTH = 40
UNIGRAM_TRAIN_SIZE = 800  # the corpus supports about 350 unigram pieces; letters added afterwards
ENCODER_IMAGE_SIZE = 32
ENCODER_PATCH_SIZE = 8
VILT_IMAGE_SIZE = 64
VILT_PATCH_SIZE = 16


def tiny_families() -> list[str]:
    """Every family `make_tiny` builds: the encoders here, every registered VLM family, and the original
    remote-code layouts that mmtune converts (tiny_internvl_chat.py)."""
    return [*ENCODER_FAMILIES, *family_names(), *ORIGINAL_LAYOUTS]


def make_tiny(family: str, out_dir: Path | str, seed: int = 0) -> Path:
    """Write a tiny random `family` model with its tokenizer and/or image processor to `out_dir`; return the folder.

    The same seed gives identical weights; the tokenizer is the same for every seed. The caller's random state is
    left as it was. Backs `mmtune make-tiny FAMILY DIR [--seed N]`; an unknown family is an InputError.
    """
    known = tiny_families()
    if family not in known:
        raise InputError(f"make-tiny: unknown family '{family}' (known: {', '.join(known)})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        builder = _BUILDERS.get(family) or ORIGINAL_LAYOUTS.get(family)
        model, parts = builder() if builder else build_family(family)
    model.save_pretrained(out)
    for part in parts:
        part.save_pretrained(out)
    return out


# ---- tokenizers -------------------------------------------------------------------------------------------


def _bert_tokenizer(max_length: int, lowercase: bool) -> BertTokenizer:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    # strip_accents=False: BERT's default strips accents whenever it lowercases, which erases Vietnamese tones.
    options = {"do_lower_case": lowercase, "strip_accents": False}
    words = corpus.words(BertTokenizer(**options).backend_tokenizer)
    letters = sorted(set(corpus.alphabet(lowercase)).union(*words))
    # WordPiece turns a whole word into [UNK] when one piece is missing: like real BERT vocabularies, hold every
    # letter both as a word start and as a continuation ("##x").
    base = specials + letters + ["##" + c for c in letters]
    split = [([w[0]] + ["##" + c for c in w[1:]], n) for w, n in sorted(words.items())]
    merges = corpus.learn_merges(split, lambda a, b: a + b[2:], VOCAB_SIZE - len(base))
    return BertTokenizer(vocab=corpus.numbered(base + [a + b[2:] for a, b in merges]), model_max_length=max_length,
                         **options)


def _clip_tokenizer() -> CLIPTokenizer:
    pipeline = CLIPTokenizer().backend_tokenizer
    # Like real CLIP, every byte exists both inside a word and at its end ("x</w>"), so no text maps to unk.
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    base = ["<|startoftext|>", "<|endoftext|>"] + alphabet + [c + "</w>" for c in alphabet]
    split = [(list(w[:-1]) + [w[-1] + "</w>"], n) for w, n in sorted(corpus.words(pipeline).items())]
    merges = corpus.learn_merges(split, lambda a, b: a + b, VOCAB_SIZE - len(base))
    vocab = corpus.numbered(base + [a + b for a, b in merges])
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=TEXT_MAX_LENGTH)


def _unigram_vocab(pipeline: Tokenizer, specials: list[str], lowercase: bool) -> list[tuple[str, float]]:
    """A unigram vocabulary trained on CORPUS through `pipeline`, plus every letter as a last-resort piece (as
    SentencePiece keeps all characters), so that Vietnamese text never maps to unk ("<unk>")."""
    trainer = trainers.UnigramTrainer(
        vocab_size=UNIGRAM_TRAIN_SIZE, special_tokens=specials, unk_token="<unk>", max_piece_length=8,
        show_progress=False,
    )
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = pipeline.normalizer
    tokenizer.pre_tokenizer = pipeline.pre_tokenizer
    tokenizer.train_from_iterator(corpus.CORPUS, trainer)
    vocab = _canonical_unigram(json.loads(tokenizer.to_str())["model"]["vocab"], specials)
    known = {piece for piece, _ in vocab}
    rare = vocab[-1][1] - 1.0
    return vocab + [(c, rare) for c in corpus.alphabet(lowercase) if c not in known]


def _canonical_unigram(trained: list[list[Any]], specials: list[str]) -> list[tuple[str, float]]:
    """The trained vocabulary in an order and with scores that do not vary from one run to the next.

    The trainer gives characters it did not keep the lowest score plus 1e-4 steps in hash-set order, and its EM
    sums leave noise in the last digits: the band is flattened, scores rounded, and pieces sorted.
    """
    pieces = [(piece, round(score, 6)) for piece, score in trained if piece not in specials]
    floor = min(score for _, score in pieces)
    pieces = [(p, floor if len(p) == 1 and score < floor + 0.05 else score) for p, score in pieces]
    return [(s, 0.0) for s in specials] + sorted(pieces, key=lambda item: (-item[1], item[0]))


def _xlm_roberta_tokenizer() -> XLMRobertaTokenizer:
    # XLMRobertaTokenizer hard-codes unk_id=3: the order <s> <pad> </s> <unk> is that of the real vocabulary.
    pipeline = XLMRobertaTokenizer().backend_tokenizer
    vocab = _unigram_vocab(pipeline, ["<s>", "<pad>", "</s>", "<unk>"], lowercase=False)
    vocab.append(("<mask>", 0.0))  # last, as in the real model
    return XLMRobertaTokenizer(vocab=vocab, model_max_length=TEXT_MAX_LENGTH)


def _siglip_tokenizer() -> PreTrainedTokenizerFast:
    # Real SigLIP: a lowercasing SentencePiece unigram model, "</s>" appended, and "</s>" also used as padding.
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    vocab = _unigram_vocab(tokenizer, ["<pad>", "</s>", "<unk>"], lowercase=True)
    tokenizer.model = models.Unigram(vocab, unk_id=2)
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", tokenizer.token_to_id("</s>"))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="</s>", pad_token="</s>", unk_token="<unk>",
        model_max_length=TEXT_MAX_LENGTH,
    )


# ---- families ---------------------------------------------------------------------------------------------


def _encoder_sizes() -> dict[str, int]:
    return {"hidden_size": HIDDEN, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
            "intermediate_size": INTERMEDIATE}


def _vision_sizes() -> dict[str, int]:
    return {**_encoder_sizes(), "image_size": ENCODER_IMAGE_SIZE, "patch_size": ENCODER_PATCH_SIZE}


def _build_bert() -> tuple[PreTrainedModel, list[Any]]:
    # Cased, like bert-base-multilingual-cased, the BERT most used for Vietnamese.
    tokenizer = _bert_tokenizer(TEXT_MAX_LENGTH, lowercase=False)
    config = BertConfig(vocab_size=len(tokenizer), max_position_embeddings=TEXT_MAX_LENGTH,
                        pad_token_id=tokenizer.pad_token_id, **_encoder_sizes())
    return BertModel(config), [tokenizer]


def _build_xlm_roberta() -> tuple[PreTrainedModel, list[Any]]:
    tokenizer = _xlm_roberta_tokenizer()
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        # RoBERTa positions start after the padding id: 128 tokens need 128 + pad_id + 1 rows (real: 514).
        max_position_embeddings=TEXT_MAX_LENGTH + tokenizer.pad_token_id + 1, type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, **_encoder_sizes(),
    )
    return XLMRobertaModel(config), [tokenizer]


def _build_vilt() -> tuple[PreTrainedModel, list[Any]]:
    # Uncased but keeping tones: ViLT uses bert-base-uncased's tokenizer.
    tokenizer = _bert_tokenizer(VILT_MAX_LENGTH, lowercase=True)
    # modality_type_vocab_size stays 2 (text, image) as in dandelin/vilt-b32-mlm, the checkpoint one fine-tunes.
    config = ViltConfig(
        vocab_size=len(tokenizer), max_position_embeddings=VILT_MAX_LENGTH, pad_token_id=tokenizer.pad_token_id,
        image_size=VILT_IMAGE_SIZE, patch_size=VILT_PATCH_SIZE, **_encoder_sizes(),
    )
    # size_divisor = patch size (32/32 in the real model): images are resized to whole patches, then padded.
    image_processor = ViltImageProcessorPil(size={"shortest_edge": VILT_IMAGE_SIZE}, size_divisor=VILT_PATCH_SIZE)
    return ViltModel(config), _named_processor([tokenizer, image_processor], "ViltProcessor")


def _build_clip() -> tuple[PreTrainedModel, list[Any]]:
    tokenizer = _clip_tokenizer()
    # eos_token_id != 2: CLIP pools on the first eos; with 2 it takes the argmax id (the legacy behaviour).
    text = {**_encoder_sizes(), "vocab_size": len(tokenizer), "max_position_embeddings": TEXT_MAX_LENGTH,
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id}
    config = CLIPConfig(text_config=text, vision_config=_vision_sizes(), projection_dim=HIDDEN)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": ENCODER_IMAGE_SIZE},
        crop_size={"height": ENCODER_IMAGE_SIZE, "width": ENCODER_IMAGE_SIZE},
    )
    return CLIPModel(config), _named_processor([tokenizer, image_processor], "CLIPProcessor")


def _build_siglip() -> tuple[PreTrainedModel, list[Any]]:
    tokenizer = _siglip_tokenizer()
    text = {**_encoder_sizes(), "vocab_size": len(tokenizer), "max_position_embeddings": TEXT_MAX_LENGTH,
            "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id, "bos_token_id": None}
    config = SiglipConfig(text_config=text, vision_config=_vision_sizes())
    image_processor = SiglipImageProcessorPil(size={"height": ENCODER_IMAGE_SIZE, "width": ENCODER_IMAGE_SIZE})
    return SiglipModel(config), _named_processor([tokenizer, image_processor], "SiglipProcessor")


def _build_vit() -> tuple[PreTrainedModel, list[Any]]:
    image_processor = ViTImageProcessorPil(size={"height": ENCODER_IMAGE_SIZE, "width": ENCODER_IMAGE_SIZE})
    return ViTModel(ViTConfig(**_vision_sizes())), [image_processor]


def _build_convnext() -> tuple[PreTrainedModel, list[Any]]:
    config = ConvNextConfig(num_stages=2, hidden_sizes=[16, HIDDEN], depths=[1, 1], image_size=ENCODER_IMAGE_SIZE)
    image_processor = ConvNextImageProcessorPil(size={"shortest_edge": ENCODER_IMAGE_SIZE})
    return ConvNextModel(config), [image_processor]


def _named_processor(parts: list[Any], processor_class: str) -> list[Any]:
    """Write the processor's name into the tokenizer config, as Hub checkpoints have it. Parts are saved one by
    one, not as a ProcessorMixin, because that would put the image processor into processor_config.json where
    Hub checkpoints have preprocessor_config.json."""
    for part in parts:
        if hasattr(part, "_set_processor_class"):  # transformers 5 image processors no longer save it
            part._set_processor_class(processor_class)
    return parts


_BUILDERS: dict[str, Callable[[], tuple[PreTrainedModel, list[Any]]]] = {
    "vilt": _build_vilt,
    "clip": _build_clip,
    "siglip": _build_siglip,
    "bert": _build_bert,
    "xlm-roberta": _build_xlm_roberta,
    "vit": _build_vit,
    "convnext": _build_convnext,
}
ENCODER_FAMILIES: tuple[str, ...] = tuple(_BUILDERS)
