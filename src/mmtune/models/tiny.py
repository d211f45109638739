"""Tiny random models of real architectures, saved like a Hub checkpoint, for fast offline tests and demos.

`make_tiny(family, out_dir, seed)` writes config + weights, a tokenizer trained here on a small Vietnamese +
English corpus, and the image processor, into one folder that the Auto classes load back offline:

    AutoModel / AutoTokenizer / AutoImageProcessor / AutoProcessor .from_pretrained(out_dir)

The folder has the layout of a Hub checkpoint (config.json, model.safetensors, tokenizer.json +
tokenizer_config.json, preprocessor_config.json), so loading it takes the code path a user's model takes.

Why the tokenizers are the family's own transformers class (BertTokenizer, CLIPTokenizer, XLMRobertaTokenizer)
and not a generic `PreTrainedTokenizerFast`: in transformers 5 a class with its own `__init__` rebuilds its
normalizer and pre-tokenizer from its arguments on reload and takes only the vocabulary (and merges) from
tokenizer.json. Training the vocabulary through the family's own pipeline keeps save and reload identical, and
the reloaded tokenizer behaves like the real checkpoint's (e.g. BERT returns token_type_ids). SigLIP's
tokenizer class needs sentencepiece, which mmtune does not require, so SigLIP gets the generic backend.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
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

FAMILIES: tuple[str, ...] = ("vilt", "clip", "siglip", "bert", "xlm-roberta", "vit", "convnext")

HIDDEN = 32
LAYERS = 2
HEADS = 2
INTERMEDIATE = 64
TEXT_MAX_LENGTH = 128
# ViLT's real text limit (bert-base-uncased embeddings cut to 40 positions); kept so that truncation is exercised.
VILT_MAX_LENGTH = 40
VOCAB_SIZE = 800
ENCODER_IMAGE_SIZE = 32
ENCODER_PATCH_SIZE = 8
VILT_IMAGE_SIZE = 64
VILT_PATCH_SIZE = 16

# Meme-like captions: diacritics, teencode, emoji, hashtags, mentions, English and code-mixed lines.
CORPUS: tuple[str, ...] = (
    "Trời đẹp quá 😂 #xuhuong",
    "Hôm nay trời đẹp quá, đi chơi thôi mn ơi 🌞",
    "Mưa to quá, kẹt xe ở Sài Gòn hai tiếng 😭",
    "Ăn phở no căng bụng, hạnh phúc là đây 🍜",
    "Cuối tháng rồi, cơm còn không có mà ăn 🙃",
    "Crush seen mà không rep, thôi ngủ 😴",
    "Qua môn giải tích rồi, vui muốn khóc 🥲",
    "Rớt môn lần thứ ba, buồn quá đi thôi 💔",
    "Được tăng lương, đời đẹp quá trời luôn 💸",
    "Bị trừ lương vì đi trễ 5 phút, cảm ơn sếp nhiều nha 👏",
    "ko bít nói j luôn, đỉnh thật sự 🤡",
    "đc nghỉ học r, sướng quá trời ơi 🎉",
    "bạn ơi mk đói quá, đi ăn bún bò hk? 🤤",
    "thật là tuyệt vời khi mất điện giữa trưa hè 🔥🔥",
    "Wifi nhà mình nhanh ghê, tải một bộ phim mất có 3 tiếng 🐢",
    "Deadline dí sát nút mà chưa làm được chữ nào 📚",
    "Mẹ nấu nồi canh chua ngon bá cháy 😋 #giadinh",
    "Chủ nhật đi Đà Lạt săn mây, lạnh run người ❄️",
    "Hà Nội mùa thu, cà phê sáng với bạn thân ☕",
    "Sáng thứ hai, tắc đường ở Cầu Giấy như mọi khi 🚗🚗🚗",
    "Điểm tiếng Anh được 2, khóc không thành tiếng 😢",
    "Pin còn 1%, quên mang sạc dự phòng, đúng là ngày may mắn 🍀",
    "Đặt trà sữa chờ 2 tiếng, shipper bùng 🙂",
    "Nhà trọ ngập tới đầu gối, view biển miễn phí nè 🌊",
    "@minh_anh ơi, tối nay đi xem phim không? 🎬",
    "Xinh đẹp tuyệt vời như mình thì ai cũng thích thôi 💅",
    "Giá xăng lại tăng, ví tiền của tôi vui quá 😀",
    "Đội tuyển Việt Nam vô địch rồi, cả nước ăn mừng 🇻🇳⚽",
    "Thầy chủ nhiệm khen cả lớp chăm chỉ, lạ thật sự 🤔",
    "Quán bánh mì đầu hẻm ngon nhức nách 🥖",
    "Ông anh họ mua xe mới, cả xóm ra xem 🛵",
    "Người yêu tặng hoa ngày 8/3, cảm động ghê 🌹",
    "Đồ án xong rồi, nhẹ cả người, ngủ thôi 😪",
    "Bão về, cả xóm mất điện, lạnh run người ⛈️",
    "vl thật, sao lại có người nghĩ ra cái này 😳",
    "đi làm về mệt xỉu mà còn phải nấu cơm 😩",
    "trời ơi tin được không, lần đầu tiên đúng giờ ⏰",
    "cảm ơn vì tất cả nha, mãi yêu 💕",
    "hahaha cười đau bụng :)) =))",
    "buồn ghê :( nhưng mà thôi kệ ^^",
    "What a beautiful day to stay home and study 🙄",
    "This is fine, everything is fine 🔥",
    "When the teacher says the test will be easy 😂",
    "Me after one hour at the gym 💪 lol",
    "Monday again, so happy to be back at work",
    "The best meme of the year, no cap 🧢",
    "Nothing says love like a cold bowl of noodles at midnight",
    "Ngày mai thi rồi mà giờ vẫn chưa học chữ nào, bình tĩnh là chính 😎",
    "Ảnh này chụp ở Hội An, đẹp như tranh vẽ 📸",
    "Mua áo online nhận về size cho em bé, tuyệt vời ông mặt trời 👕",
    "Sếp bảo làm thêm giờ không lương, vui ghê ta 😃",
    "Tết này được lì xì nhiều quá, giàu rồi 🧧",
    "Hỏi thật, có ai thấy cái điều khiển ở đâu không? 📺",
    "Nóng 40 độ mà cắt điện, quá tuyệt 🥵",
)


@dataclass(frozen=True)
class _Family:
    """How to build one family: its model and what processes its inputs."""

    build: Callable[[], tuple[PreTrainedModel, list[Any]]]


def make_tiny(family: str, out_dir: Path | str, seed: int = 0) -> Path:
    """Write a tiny random `family` model with its tokenizer and/or image processor to `out_dir`; return the folder.

    The same seed gives identical weights; the tokenizer does not depend on the seed.
    """
    spec = _FAMILY_SPECS.get(family)
    if spec is None:
        raise InputError(f"make-tiny: unknown family '{family}' (known: {', '.join(FAMILIES)})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model, parts = spec.build()
    model.save_pretrained(out)
    for part in parts:
        part.save_pretrained(out)
    return out


# ---- tokenizers -------------------------------------------------------------------------------------------


def _train(pipeline: Tokenizer, model: models.Model, trainer: trainers.Trainer) -> dict[str, Any]:
    """Train `model` through `pipeline`'s normalizer and pre-tokenizer; return the trained model as JSON."""
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = pipeline.normalizer
    tokenizer.pre_tokenizer = pipeline.pre_tokenizer
    tokenizer.train_from_iterator(CORPUS, trainer)
    return json.loads(tokenizer.to_str())["model"]


def _bert_tokenizer(max_length: int, lowercase: bool) -> BertTokenizer:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    # strip_accents=False: BERT's default strips accents whenever it lowercases, which erases Vietnamese tones.
    options = {"do_lower_case": lowercase, "strip_accents": False}
    pipeline = BertTokenizer(**options).backend_tokenizer
    trainer = trainers.WordPieceTrainer(vocab_size=VOCAB_SIZE, special_tokens=specials)
    vocab = _train(pipeline, models.WordPiece(unk_token="[UNK]"), trainer)["vocab"]
    return BertTokenizer(vocab=vocab, model_max_length=max_length, **options)


def _clip_tokenizer() -> CLIPTokenizer:
    pipeline = CLIPTokenizer().backend_tokenizer
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=["<|startoftext|>", "<|endoftext|>"], initial_alphabet=alphabet,
        end_of_word_suffix="</w>",
    )
    trained = _train(pipeline, models.BPE(end_of_word_suffix="</w>"), trainer)
    vocab: dict[str, int] = trained["vocab"]
    # Like real CLIP, every byte exists both inside a word and at its end ("x</w>"), so that no text maps to
    # unk: the trainer only makes end-of-word symbols for bytes that ended a word in the corpus.
    for symbol in sorted(alphabet) + sorted(c + "</w>" for c in alphabet):
        vocab.setdefault(symbol, len(vocab))
    merges = [tuple(m) for m in trained["merges"]]
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=TEXT_MAX_LENGTH)


def _xlm_roberta_tokenizer() -> XLMRobertaTokenizer:
    # XLMRobertaTokenizer hard-codes unk_id=3: the order <s> <pad> </s> <unk> is that of the real vocabulary.
    pipeline = XLMRobertaTokenizer().backend_tokenizer
    trainer = trainers.UnigramTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=["<s>", "<pad>", "</s>", "<unk>"], unk_token="<unk>", max_piece_length=8,
    )
    vocab = [tuple(piece) for piece in _train(pipeline, models.Unigram(), trainer)["vocab"]]
    vocab.append(("<mask>", 0.0))  # last, as in the real model
    return XLMRobertaTokenizer(vocab=vocab, model_max_length=TEXT_MAX_LENGTH)


def _siglip_tokenizer() -> PreTrainedTokenizerFast:
    # Real SigLIP: a lowercasing SentencePiece unigram model, "</s>" appended, and "</s>" also used as padding.
    pipeline = Tokenizer(models.Unigram())
    pipeline.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    pipeline.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    trainer = trainers.UnigramTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", max_piece_length=8,
    )
    trained = _train(pipeline, models.Unigram(), trainer)
    tokenizer = Tokenizer(models.Unigram([tuple(p) for p in trained["vocab"]], unk_id=trained["unk_id"]))
    tokenizer.normalizer = pipeline.normalizer
    tokenizer.pre_tokenizer = pipeline.pre_tokenizer
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
        # RoBERTa positions start after the padding id, so 128 tokens need 128 + pad_id + 1 rows (real: 514).
        max_position_embeddings=TEXT_MAX_LENGTH + tokenizer.pad_token_id + 1, type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, **_encoder_sizes(),
    )
    return XLMRobertaModel(config), [tokenizer]


def _build_vilt() -> tuple[PreTrainedModel, list[Any]]:
    # Uncased without accent stripping: ViLT uses bert-base-uncased's tokenizer.
    tokenizer = _bert_tokenizer(VILT_MAX_LENGTH, lowercase=True)
    config = ViltConfig(
        vocab_size=len(tokenizer), max_position_embeddings=VILT_MAX_LENGTH, pad_token_id=tokenizer.pad_token_id,
        image_size=VILT_IMAGE_SIZE, patch_size=VILT_PATCH_SIZE, **_encoder_sizes(),
    )
    # size_divisor = patch size (as 32/32 in the real model), so padded images cut into whole patches.
    image_processor = ViltImageProcessorPil(size={"shortest_edge": VILT_IMAGE_SIZE}, size_divisor=VILT_PATCH_SIZE)
    return ViltModel(config), _with_processor_class([tokenizer, image_processor], "ViltProcessor")


def _build_clip() -> tuple[PreTrainedModel, list[Any]]:
    tokenizer = _clip_tokenizer()
    text = {**_encoder_sizes(), "vocab_size": len(tokenizer), "max_position_embeddings": TEXT_MAX_LENGTH,
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id}
    config = CLIPConfig(text_config=text, vision_config=_vision_sizes(), projection_dim=HIDDEN)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": ENCODER_IMAGE_SIZE},
        crop_size={"height": ENCODER_IMAGE_SIZE, "width": ENCODER_IMAGE_SIZE},
    )
    return CLIPModel(config), _with_processor_class([tokenizer, image_processor], "CLIPProcessor")


def _build_siglip() -> tuple[PreTrainedModel, list[Any]]:
    tokenizer = _siglip_tokenizer()
    text = {**_encoder_sizes(), "vocab_size": len(tokenizer), "max_position_embeddings": TEXT_MAX_LENGTH,
            "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id, "bos_token_id": None}
    config = SiglipConfig(text_config=text, vision_config=_vision_sizes())
    image_processor = SiglipImageProcessorPil(size={"height": ENCODER_IMAGE_SIZE, "width": ENCODER_IMAGE_SIZE})
    return SiglipModel(config), _with_processor_class([tokenizer, image_processor], "SiglipProcessor")


def _build_vit() -> tuple[PreTrainedModel, list[Any]]:
    image_processor = ViTImageProcessorPil(size={"height": ENCODER_IMAGE_SIZE, "width": ENCODER_IMAGE_SIZE})
    return ViTModel(ViTConfig(**_vision_sizes())), [image_processor]


def _build_convnext() -> tuple[PreTrainedModel, list[Any]]:
    config = ConvNextConfig(num_stages=2, hidden_sizes=[16, HIDDEN], depths=[1, 1], image_size=ENCODER_IMAGE_SIZE)
    image_processor = ConvNextImageProcessorPil(size={"shortest_edge": ENCODER_IMAGE_SIZE})
    return ConvNextModel(config), [image_processor]


def _with_processor_class(parts: list[Any], processor_class: str) -> list[Any]:
    """Name the processor in each part's saved config, as Hub checkpoints do, so that AutoProcessor finds it."""
    for part in parts:
        if hasattr(part, "_set_processor_class"):
            part._set_processor_class(processor_class)
    return parts


_FAMILY_SPECS: dict[str, _Family] = {
    "vilt": _Family(_build_vilt),
    "clip": _Family(_build_clip),
    "siglip": _Family(_build_siglip),
    "bert": _Family(_build_bert),
    "xlm-roberta": _Family(_build_xlm_roberta),
    "vit": _Family(_build_vit),
    "convnext": _Family(_build_convnext),
}
