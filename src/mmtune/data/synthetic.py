"""Synthetic ViMMSD-style demo data: Vietnamese meme posts whose label needs both modalities.

Every post has a caption *kind* and an image *kind*, each one of `pos`, `neg`, `neutral`, `ironic`:

- images: `pos` scenes are bright and happy (sunny field, full plate, smiling face, full battery,
  strong wifi), `neg` scenes dark and sad (storm with rain, empty plate, crying face, empty battery,
  no signal), `neutral` scenes muted and moodless (clock, calendar, office building), `ironic` scenes
  contradict themselves (a grinning sun in a storm, a smiling face among flames, an
  "expectation vs reality" split panel, a crying face under a bright sun).
- captions: `pos` / `neg` captions claim something good / bad about the pictured situation (same
  topic as the scene), `neutral` captions only describe, `ironic` captions are sarcastic on their own
  (praise for a bad event: "Tuyệt vời, lại mất điện đúng giờ thi 🙃").

The label follows `LABEL_RULES`:

    caption  image    label
    pos      pos      not-sarcasm
    neg      neg      not-sarcasm
    neutral  neutral  not-sarcasm
    pos      neg      multi-sarcasm   (the caption contradicts the picture)
    neg      pos      multi-sarcasm
    ironic   ironic   multi-sarcasm   (both sarcastic: the two-bit view of labels.py)
    ironic   neutral  text-sarcasm
    neutral  ironic   image-sarcasm

Every caption kind and every image kind occurs under two labels, so neither modality alone decides
any class (the best single-modality guess is right on ~60% of posts).

Like the real data: ~23% of train captions are shared (some groups with conflicting labels), a few
images are reused byte for byte or re-encoded / resized, test captions are about half as long, and
`LEAKED_TEST_POSTS` test posts copy a train post. `inject_faults` adds the faults listed in `FAULTS`.
Generation is deterministic by seed; `_generate_specs` gives the per-post spec (kinds, scenes,
faults) before rendering, which the tests use to check the rules.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import math
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mmtune.data.labels import IMAGE, MULTI, NOT, TEXT

POS, NEG, NEUTRAL, IRONIC = "pos", "neg", "neutral", "ironic"
KINDS = (POS, NEG, NEUTRAL, IRONIC)

LABEL_RULES: dict[tuple[str, str], str] = {
    (POS, POS): NOT,
    (NEG, NEG): NOT,
    (NEUTRAL, NEUTRAL): NOT,
    (POS, NEG): MULTI,
    (NEG, POS): MULTI,
    (IRONIC, IRONIC): MULTI,
    (IRONIC, NEUTRAL): TEXT,
    (NEUTRAL, IRONIC): IMAGE,
}

# The real data is 56/39/4/0.7; the demo over-samples the rare classes so they can be learned.
LABEL_SHARES: dict[str, float] = {NOT: 0.55, MULTI: 0.36, IMAGE: 0.06, TEXT: 0.03}
# (caption kind, image kind) mix inside each label.
LABEL_COMBOS: dict[str, tuple[tuple[tuple[str, str], float], ...]] = {
    NOT: (((POS, POS), 0.44), ((NEG, NEG), 0.44), ((NEUTRAL, NEUTRAL), 0.12)),
    MULTI: (((POS, NEG), 0.46), ((NEG, POS), 0.46), ((IRONIC, IRONIC), 0.08)),
    TEXT: (((IRONIC, NEUTRAL), 1.0),),
    IMAGE: (((NEUTRAL, IRONIC), 1.0),),
}

CAPTION_REUSE_RATE = 0.14  # share of train posts that copy an earlier caption (~23% end up shared)
LEAKED_TEST_POSTS = 2  # test posts that are exact copies (caption + image) of train posts
PNG_AS_JPG_FRACTION = 0.015
# What inject_faults=True puts into the TRAIN file; fault_counts() gives the numbers.
FAULTS: dict[str, str] = {
    "png_as_jpg": "PNG bytes saved under a <sha256>.jpg name (1.5% of train, at least 1)",
    "panorama": "3 images wider than 3:1",
    "emoji_only_caption": "2 captions made of emoji only",
    "empty_caption": "2 empty captions",
    "missing_image": "1 post whose image file is not written",
    "truncated_image": "1 JPEG cut short (cannot be decoded)",
    "image_list": "1 post whose `image` is a list of 2 file names",
    "long_caption": "1 caption longer than 300 words",
}

MEME_BAR_RATE = 0.55
NFD_RATE = 0.03
# Extra sentences after the main one: test captions come out about half as long as train ones.
TRAIN_EXTRA_SENTENCES = ((0, 0.1), (1, 0.2), (2, 0.3), (3, 0.25), (4, 0.15))
TEST_EXTRA_SENTENCES = ((0, 0.9), (1, 0.1))
SAME_LABEL_REUSE = 0.7  # a reused caption mostly keeps its label: ~20% of duplicate groups conflict


def fault_counts(n_train: int) -> dict[str, int]:
    """How many posts of each fault `make_demo_data(..., inject_faults=True)` writes."""
    return {
        "png_as_jpg": max(1, round(PNG_AS_JPG_FRACTION * n_train)),
        "panorama": 3,
        "emoji_only_caption": 2,
        "empty_caption": 2,
        "missing_image": 1,
        "truncated_image": 1,
        "image_list": 1,
        "long_caption": 1,
    }


@dataclass(frozen=True)
class DemoData:
    """Where `make_demo_data` wrote things; `test_gold` is the (id,label) answer key of `test`."""

    root: Path
    train: Path
    train_images: Path
    test: Path
    test_images: Path
    test_gold: Path


@dataclass(frozen=True)
class _ImageSpec:
    kind: str
    scene: str
    seed: int
    width: int
    height: int
    quality: int
    fmt: str = "JPEG"
    resize_to: tuple[int, int] | None = None
    truncate: bool = False


@dataclass
class _PostSpec:
    id: str
    label: str  # the gold label; written as null for test posts
    caption: str
    caption_kind: str
    image_kind: str
    topic: str
    images: list[_ImageSpec]
    faults: set[str] = field(default_factory=set)
    # Not faults: "dup_image", "dup_image_source", "leak", "leak_source"; keep fault injection off them.
    tags: set[str] = field(default_factory=set)
    image_as_list: bool = False
    missing: bool = False


@dataclass
class _Specs:
    train: list[_PostSpec]
    test: list[_PostSpec]


# ----------------------------------------------------------------------------------------- captions

TIME = ["hôm nay", "sáng nay", "chiều nay", "tối nay", "tối qua", "cuối tuần này", "sáng thứ hai",
        "hôm qua", "giữa tuần", "ngày đầu tháng", "mùa thi này", "sáng chủ nhật", "trưa nay"]
PLACE = ["Sài Gòn", "Hà Nội", "Đà Nẵng", "Đà Lạt", "Cần Thơ", "Huế", "Thủ Đức", "quận 1", "Cầu Giấy",
         "ký túc xá", "làng đại học", "quê nhà", "Vũng Tàu", "Nha Trang", "Gò Vấp", "Hải Phòng"]
PERSON = ["mẹ", "ba", "crush", "sếp", "thầy chủ nhiệm", "cô giáo", "đứa bạn thân", "bạn cùng phòng",
          "người yêu", "ông anh họ", "nhóm trưởng", "chủ trọ", "bà ngoại"]
FOOD = ["phở", "bún bò", "cơm tấm", "bánh mì", "bún chả", "hủ tiếu", "bánh xèo", "lẩu", "trà sữa",
        "gà rán", "mì cay", "bò kho", "cơm gà", "bún riêu"]
SUBJECT = ["giải tích", "xác suất thống kê", "triết", "cấu trúc dữ liệu", "tiếng Anh", "vật lý đại cương",
           "lập trình C", "máy học", "kinh tế vi mô"]
SLOTS: dict[str, list[str]] = {"time": TIME, "place": PLACE, "person": PERSON, "food": FOOD,
                               "subject": SUBJECT, "clock": ["6 giờ sáng", "7 giờ tối", "12 giờ trưa",
                                                             "2 giờ sáng", "5 giờ chiều"]}

# Scene theme of a pos/neg image -> topic of the caption written about it.
THEME_TOPIC = {"weather": "weather", "food": "food", "face": "life", "battery": "battery", "signal": "signal"}
TOPIC_THEME = {topic: theme for theme, topic in THEME_TOPIC.items()}
TOPICS = tuple(TOPIC_THEME)

POLAR_TEMPLATES: dict[str, dict[str, list[str]]] = {
    "weather": {
        POS: ["{time} trời đẹp quá, đi chơi thôi mn ơi", "Nắng đẹp thế này mà ở nhà thì phí lắm",
              "{place} {time} nắng vàng, trời xanh, yêu ghê", "Trời trong xanh, gió mát, đi dạo thích thật",
              "Cuối cùng cũng có một ngày nắng đẹp ở {place}", "Thời tiết {time} đẹp xỉu, ai đi cà phê không",
              "Nắng lên rồi, phơi đồ thôi", "{time} trời quang mây tạnh, chụp ảnh đẹp ghê"],
        NEG: ["{time} mưa to quá, kẹt ở {place} không về được", "Mưa từ sáng tới tối, ngập hết cả đường rồi",
              "Trời âm u cả ngày, buồn ngủ muốn xỉu", "Bão về, cả xóm mất điện, lạnh run người",
              "Đang đi thì mưa như trút nước, ướt hết cả người", "{place} {time} mưa gió bão bùng, chán thật",
              "Ngập tới đầu gối, xe chết máy giữa đường", "{time} sấm chớp đùng đùng, sợ muốn khóc"],
    },
    "food": {
        POS: ["{time} được {person} nấu cho nồi {food} ngon bá cháy",
              "Ăn {food} no căng bụng, hạnh phúc là đây",
              "Bữa tối đầy đủ món, nhìn thôi đã thấy no", "Quán {food} ở {place} ngon thật sự, ăn sạch luôn",
              "Lương về, đãi cả phòng một bữa {food} thịnh soạn",
              "Mâm cơm nhà làm có cá có thịt có canh, đủ đầy",
              "{food} ở {place} ngon nhức nách, ăn hai tô vẫn thèm"],
        NEG: ["Cuối tháng rồi, cơm còn không có mà ăn", "Mở tủ lạnh ra chỉ thấy cái đĩa trống trơn",
              "{time} nhịn đói vì hết tiền, thèm {food} quá",
              "Đặt {food} chờ 2 tiếng, shipper bùng, đói rã ruột",
              "Cả nhà ăn hết, phần mình chỉ còn cái đĩa không", "Hết sạch tiền, tối nay lại nhịn đói",
              "Đói bụng mà trong nhà không còn gì ăn, buồn ghê"],
    },
    "life": {
        POS: ["Qua môn {subject} rồi mn ơi, vui muốn khóc", "{time} được tăng lương, đời đẹp quá",
              "Crush rep tin nhắn rồi, hạnh phúc ghê", "Được {person} khen trước cả lớp, vui cả ngày",
              "Điểm {subject} được 9, không uổng công thức đêm ôn bài",
              "Cuối cùng cũng xong đồ án, nhẹ cả người",
              "Trúng tuyển rồi, cảm ơn mọi người đã ủng hộ", "{time} được nghỉ học, sướng quá trời"],
        NEG: ["Rớt môn {subject} lần thứ ba, buồn quá", "{time} bị trừ lương vì đi trễ 5 phút",
              "Crush seen mà không rep, thôi ngủ", "Bị {person} mắng cả buổi, chán không muốn nói",
              "Kẹt xe hai tiếng ở {place}, trễ luôn buổi phỏng vấn",
              "Deadline dí sát nút mà chưa làm được chữ nào",
              "Mất ví ở {place}, giờ không còn đồng nào", "Điểm {subject} được 2, khóc không thành tiếng"],
    },
    "battery": {
        POS: ["Sạc đầy pin 100%, đi chơi cả ngày không lo", "Có điện lại rồi, bật quạt thôi",
              "Pin trâu thật, xài từ sáng tới tối vẫn còn nhiều", "Mới thay pin điện thoại, mượt như mới",
              "Xóm mình {time} không cúp điện, mừng ghê", "Điện thoại sạc nhanh ghê, 20 phút là đầy"],
        NEG: ["Điện thoại hết pin giữa đường, không gọi được ai",
              "{time} mất điện cả khu {place}, nóng muốn xỉu",
              "Pin còn 1%, quên mang sạc dự phòng", "Cúp điện đúng lúc đang làm bài, mất hết file",
              "Laptop sập nguồn vì hết pin, chưa kịp lưu bài",
              "Mất điện từ sáng, điện thoại cũng sắp tắt nguồn"],
    },
    "signal": {
        POS: ["Wifi mới lắp nhanh thật, tải phim trong vài giây",
              "Mạng {time} mượt quá, chơi game không lag tí nào",
              "Đổi nhà mạng xong lướt web nhanh hẳn", "Wifi ở {place} mạnh ghê, họp online không bị giật",
              "Mạng căng đét, xem phim 4K không khựng"],
        NEG: ["Wifi lag quá, họp online rớt mạng liên tục", "Mạng chập chờn cả ngày, không nộp bài được",
              "{time} cá mập cắn cáp, mạng chậm như rùa", "Đang chơi game thì mất mạng, thua luôn trận",
              "Wifi ký túc xá yếu xìu, load mãi không xong"],
    },
}

NEUTRAL_TEMPLATES = [
    "Ảnh chụp ở {place} {time}", "{time} ở {place}", "Góc nhỏ ở {place}", "Ai biết đây là đâu không",
    "Lưu lại để mai mốt xem", "Chuyện thường ngày ở {place}", "Gửi {person}", "Ảnh này chụp lúc {clock}",
    "Tag đứa bạn hay đi cùng", "Một ngày như mọi ngày", "Mới chụp {time}", "Không biết nói gì",
    "Khi {person} hỏi bạn đang làm gì", "Cái này là gì vậy mn", "POV: {time} ở {place}",
    "Đăng cho có bài", "{person} gửi cho mình tấm này", "Ai còn nhớ chỗ này không",
]

IRONIC_OPENERS = ["Tuyệt vời", "Tuyệt vời ông mặt trời", "Hay quá ta", "Đỉnh thật sự", "Vui ghê chưa",
                  "Quá là may mắn luôn", "Hạnh phúc gì đâu", "Ôi thật là tuyệt", "Đời đẹp quá"]
IRONIC_PATTERNS = [
    "{opener}, lại {event} {emo}", "{opener}: {event} {emo}", "Cảm ơn {thanks} {emo}",
    "Ước gì ngày nào cũng {event} như {time} {emo}", "Mình thích nhất là {event}, thật đó {emo}",
    "Đúng là không gì vui bằng {event} {emo}", "Một ngày hoàn hảo: {event} {emo}",
]
IRONIC_EVENTS: dict[str, list[str]] = {
    "weather": ["mưa đúng lúc vừa phơi đồ xong", "vừa rửa xe xong thì trời đổ mưa",
                "đi chơi cuối tuần thì bão về",
                "quên áo mưa đúng hôm mưa to nhất năm"],
    "food": ["đặt đồ ăn ba tiếng vẫn chưa tới", "ăn mì gói với nước lọc", "mua trà sữa về bị đổ hết",
             "đói meo mà quán đóng cửa hết"],
    "life": ["rớt môn {subject} lần thứ ba", "bị gọi đi làm đúng ngày nghỉ",
             "lương về đủ trả nợ trong 5 phút",
             "deadline dồn hết vào một ngày", "kẹt xe hai tiếng ở {place}"],
    "battery": ["mất điện đúng giờ thi", "điện thoại hết pin đúng lúc cần gọi xe",
                "cúp điện đúng lúc nộp bài",
                "mất điện giữa trưa nắng 40 độ"],
    "signal": ["wifi rớt đúng lúc nộp bài", "mạng lag đúng lúc vào thi", "họp online thì mạng đứng hình",
               "đang chơi game thì mất mạng"],
}
IRONIC_THANKS: dict[str, list[str]] = {
    "weather": ["ông trời vì cơn mưa đúng giờ tan tầm", "ông trời vì cơn bão đúng ngày nghỉ lễ"],
    "food": ["shipper vì giao trà sữa chỉ còn nửa ly", "quán vì cho thêm sợi tóc vào tô {food}"],
    "life": ["phòng đào tạo vì xếp lịch thi trùng nhau", "sếp vì cho tăng ca đúng đêm giao thừa"],
    "battery": ["EVN vì cho cả xóm ngủ sớm", "cục sạc vì sạc cả đêm được 5%"],
    "signal": ["nhà mạng vì wifi nhanh như rùa", "nhà mạng vì cho mình một buổi tối không có mạng"],
}
IRONIC_EMOJI = ["🙃", "🙂", "👏👏", "🤡", ":)", "😊", "🙃🙃", ""]

FILLER = ["Chuyện là vậy đó.", "Ai hiểu không?", "Kể mn nghe nè.", "Tag đứa bạn vào xem đi.",
          "Nói chung là vậy.", "Chuyện thật 100%.", "Ảnh chụp bằng điện thoại nên hơi mờ.",
          "Share cho mn cùng xem.", "Ai ở {place} thì biết.", "Chụp {time}.", "Để đây thôi.",
          "Không biết mn sao chứ mình là vậy đó."]
EXTRA: dict[str, list[str]] = {
    POS: ["Vui ghê!", "Yêu đời quá.", "Mong ngày nào cũng vậy.", "Hạnh phúc đơn giản vậy thôi.",
          "Thích thật sự.", "Đỉnh v.l luôn."],
    NEG: ["Chán thật sự.", "Mệt mỏi quá.", "Buồn ghê.", "Muốn khóc luôn.", "Mệt c.h.ó thật.",
          "Đ.m cuộc đời.", "Xui hết chỗ nói."],
    IRONIC: ["Đời đúng là màu hồng 🙃", "Cuộc sống tươi đẹp ghê chưa.", "Mình ổn mà, ổn lắm :)",
             "Quá là hợp lý luôn."],
    NEUTRAL: [],
}
EMOJI: dict[str, list[str]] = {
    POS: ["😍", "🥰", "😂", "❤️", "🔥", ":))", "=))", "😆", "🤩", "<3"],
    NEG: ["😭", "😢", "🥲", ":((", "😤", "💔", "😩", ":("],
    NEUTRAL: ["👀", "🤔", "📸", ":v", "😶"],
    IRONIC: ["🙃", "🤡", "👏"],
}
HASHTAGS = ["#xuhuong", "#ThanhXuan", "#fyp", "#meme", "#sinhvien", "#haihuoc", "#viral", "#genz",
            "#cuocsong", "#tamtrang", "#reviewanngon"]
MENTIONS = ["@Minh Thư", "@Hoàng Long", "@Bảo Ngọc", "@Quốc Huy", "@Thảo Vy", "@Gia Bảo"]
TEENCODE = {"không": ["ko", "k", "hông"], "được": ["dc", "đc"], "gì": ["j"], "mọi người": ["mn", "mng"],
            "với": ["vs"], "rồi": ["r", "rùi"], "vậy": ["v", "zậy"], "biết": ["bít"], "thôi": ["thui"],
            "bạn": ["bn"], "luôn": ["lun"], "yêu": ["iu"], "quá": ["wá"]}
ELONGATE = ["quá", "ghê", "đẹp", "ơi", "vui", "buồn", "lắm", "trời", "thật"]
EMOJI_ONLY = ["👀👀👀", "🤔", "😶😶", "📸"]


def _fill(rng: random.Random, template: str) -> str:
    text = re.sub(r"\{(\w+)\}", lambda m: rng.choice(SLOTS[m.group(1)]), template)
    return text[0].upper() + text[1:] if text else text


def _main_sentence(rng: random.Random, kind: str, topic: str) -> str:
    if kind in (POS, NEG):
        return _fill(rng, rng.choice(POLAR_TEMPLATES[topic][kind]))
    if kind == NEUTRAL:
        return _fill(rng, rng.choice(NEUTRAL_TEMPLATES))
    pattern = rng.choice(IRONIC_PATTERNS)
    parts = {"opener": rng.choice(IRONIC_OPENERS), "event": rng.choice(IRONIC_EVENTS[topic]),
             "thanks": rng.choice(IRONIC_THANKS[topic]), "emo": rng.choice(IRONIC_EMOJI),
             "time": "{time}"}
    return _fill(rng, pattern.format(**parts)).strip()


def _extra_sentence(rng: random.Random, kind: str) -> str:
    # Half the extras restate the caption's polarity, the rest are polarity-free chatter.
    pool = EXTRA[kind] if EXTRA[kind] and rng.random() < 0.5 else FILLER
    return _fill(rng, rng.choice(pool))


def _weighted(rng: random.Random, choices: Sequence[tuple[object, float]]) -> object:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def _teencode(rng: random.Random, text: str) -> str:
    for word, subs in TEENCODE.items():
        if rng.random() < 0.7:
            text = re.sub(rf"(?<!\w){word}(?!\w)", lambda _m, s=subs: rng.choice(s), text)
    return text


def _elongate(rng: random.Random, text: str) -> str:
    present = [w for w in ELONGATE if re.search(rf"(?<!\w){w}(?!\w)", text)]
    if not present:
        return text
    word = rng.choice(present)
    base = unicodedata.normalize("NFD", word[-1])[0]
    return re.sub(rf"(?<!\w){word}(?!\w)", word + base * rng.randint(2, 4), text, count=1)


def _stylize(rng: random.Random, text: str, kind: str, split: str) -> str:
    """Social-media surface: teencode, emoji, hashtags, mentions, elongation, NFD."""
    if rng.random() < 0.3:
        text = _teencode(rng, text)
    if rng.random() < 0.12:
        text = _elongate(rng, text)
    if rng.random() < 0.45:
        text += " " + "".join(rng.choice(EMOJI[kind]) for _ in range(rng.randint(1, 3)))
    tag_rate = 0.3 if split == "train" else 0.08
    if rng.random() < tag_rate:
        text += " " + " ".join(rng.sample(HASHTAGS, rng.randint(1, 3)))
    if rng.random() < 0.06:
        text = rng.choice(MENTIONS) + " " + text if rng.random() < 0.5 else text + " " + rng.choice(MENTIONS)
    if rng.random() < 0.15:
        text = text[0].lower() + text[1:]
    if rng.random() < NFD_RATE:
        text = unicodedata.normalize("NFD", text)
    return text


def _compose_caption(rng: random.Random, kind: str, topic: str, split: str) -> str:
    sentences = [_main_sentence(rng, kind, topic)]
    n_extra = int(_weighted(rng, TRAIN_EXTRA_SENTENCES if split == "train" else TEST_EXTRA_SENTENCES))
    for _ in range(n_extra):
        extra = _extra_sentence(rng, kind)
        if extra not in sentences:
            sentences.append(extra)
    text = sentences[0]
    for sentence in sentences[1:]:
        ended = text[-1] in ".!?:)" or not text[-1].isascii()
        text += rng.choice([" ", "\n"] if ended else [". ", "! ", " ", "\n", "... ", ", "]) + sentence
    return _stylize(rng, text, kind, split)


def _long_caption(rng: random.Random, kind: str, topic: str) -> str:
    sentences = [_main_sentence(rng, kind, topic)]
    while sum(len(s.split()) for s in sentences) <= 320:
        extra = rng.random() < 0.5
        sentences.append(_extra_sentence(rng, kind) if extra else _main_sentence(rng, kind, topic))
    return " ".join(sentences)


# ------------------------------------------------------------------------------------------- images

RGB = tuple[int, int, int]
Box = tuple[int, int, int, int]
Draw = ImageDraw.ImageDraw

POS_NEG_SCENES = tuple(THEME_TOPIC)
NEUTRAL_SCENES = ("clock", "calendar", "building")
IRONIC_SCENES = ("sun_in_storm", "this_is_fine", "expectation_reality", "crying_in_sunshine")


def _jit(rng: random.Random, colour: RGB, amount: int = 18) -> RGB:
    span = 2 * amount + 1  # int(random() * span) is a cheaper randint: this runs ~10 times per image
    r, g, b = (max(0, min(255, c - amount + int(rng.random() * span))) for c in colour)
    return r, g, b


def _dims(box: Box) -> tuple[int, int, int, int, int, int]:
    x0, y0, x1, y1 = box
    return x0, y0, x1, y1, x1 - x0, y1 - y0


def _face(d: Draw, rng: random.Random, cx: float, cy: float, rad: float, colour: RGB, mood: str) -> None:
    d.ellipse((cx - rad, cy - rad, cx + rad, cy + rad), fill=_jit(rng, colour, 12), outline=(40, 30, 20),
              width=max(1, int(rad * 0.06)))
    eye = rad * 0.11
    for sx in (-1, 1):
        ex, ey = cx + sx * rad * 0.35, cy - rad * 0.2
        d.ellipse((ex - eye, ey - eye * 1.3, ex + eye, ey + eye * 1.3), fill=(30, 25, 20))
    lw = max(2, int(rad * 0.1))
    if mood == "smile":
        d.arc((cx - rad * 0.55, cy - rad * 0.45, cx + rad * 0.55, cy + rad * 0.6), 20, 160, fill=(60, 20, 20),
              width=lw)
        for sx in (-1, 1):
            bx, by = cx + sx * rad * 0.55, cy + rad * 0.15
            d.ellipse((bx - eye * 1.4, by - eye, bx + eye * 1.4, by + eye), fill=(250, 140, 150))
    else:
        d.arc((cx - rad * 0.5, cy + rad * 0.2, cx + rad * 0.5, cy + rad * 0.95), 200, 340, fill=(30, 20, 40),
              width=lw)
        for sx in (-1, 1):
            tx, ty = cx + sx * rad * 0.35, cy + rad * 0.05
            d.polygon([(tx, ty), (tx - eye, ty + eye * 3), (tx + eye, ty + eye * 3)], fill=(50, 120, 255))
            d.ellipse((tx - eye, ty + eye * 2, tx + eye, ty + eye * 4), fill=(50, 120, 255))


def _sun(d: Draw, rng: random.Random, cx: float, cy: float, rad: float) -> None:
    width = max(1, int(rad * 0.12))
    offset = rng.uniform(0, math.pi / 4)
    for k in range(8):
        a = offset + k * math.pi / 4
        d.line((cx + math.cos(a) * rad * 1.25, cy + math.sin(a) * rad * 1.25,
                cx + math.cos(a) * rad * 1.7, cy + math.sin(a) * rad * 1.7), fill=(255, 200, 30), width=width)
    d.ellipse((cx - rad, cy - rad, cx + rad, cy + rad), fill=_jit(rng, (252, 215, 40), 10))


def _cloud(d: Draw, cx: float, cy: float, s: float, colour: RGB) -> None:
    for dx, dy, r in ((-0.5, 0.1, 0.45), (0.0, -0.15, 0.6), (0.55, 0.1, 0.45)):
        x, y, rx, ry = cx + dx * s, cy + dy * s, r * s, r * s * 0.7
        d.ellipse((x - rx, y - ry, x + rx, y + ry), fill=colour)


def _weather_pos(d: Draw, rng: random.Random, box: Box) -> None:
    x0, y0, x1, y1, w, h = _dims(box)
    d.rectangle(box, fill=_jit(rng, (95, 175, 240)))
    gy = y0 + int(h * rng.uniform(0.62, 0.8))
    d.rectangle((x0, gy, x1, y1), fill=_jit(rng, (70, 175, 60)))
    s = min(w, h)
    _sun(d, rng, x0 + w * rng.uniform(0.2, 0.8), y0 + h * rng.uniform(0.15, 0.35), s * rng.uniform(0.1, 0.16))
    for _ in range(rng.randint(1, 2)):
        _cloud(d, x0 + w * rng.uniform(0.1, 0.9), y0 + h * rng.uniform(0.1, 0.45), s * 0.14, (248, 248, 252))
    for _ in range(rng.randint(0, 6)):
        fx, fy = x0 + w * rng.random(), gy + (y1 - gy) * rng.uniform(0.2, 0.9)
        flower = rng.choice([(240, 60, 60), (255, 230, 60), (255, 255, 255)])
        d.ellipse((fx - 2, fy - 2, fx + 2, fy + 2), fill=flower)


def _weather_neg(d: Draw, rng: random.Random, box: Box) -> None:
    x0, y0, x1, y1, w, h = _dims(box)
    d.rectangle(box, fill=_jit(rng, (60, 66, 78), 12))
    gy = y0 + int(h * rng.uniform(0.68, 0.82))
    d.rectangle((x0, gy, x1, y1), fill=_jit(rng, (45, 52, 48), 10))
    s = min(w, h)
    for _ in range(rng.randint(3, 5)):
        _cloud(d, x0 + w * rng.uniform(0, 1), y0 + h * rng.uniform(0.05, 0.3), s * rng.uniform(0.15, 0.25),
               _jit(rng, rng.choice([(42, 45, 55), (85, 90, 100)]), 8))
    if rng.random() < 0.5:
        bx, by = x0 + w * rng.uniform(0.2, 0.8), y0 + h * 0.3
        zigzag = ((0, 0), (-0.06, 0.15), (0.03, 0.15), (-0.04, 0.32))
        bolt = [(bx + s * dx, by + s * dy) for dx, dy in zigzag]
        d.line(bolt, fill=(235, 235, 205), width=max(1, s // 40))
    slant, rain = rng.uniform(0.15, 0.45), _jit(rng, (150, 165, 190), 10)
    for _ in range(w * h // 280):
        rx, ry, length = x0 + w * rng.random(), y0 + h * rng.uniform(0.2, 1), s * rng.uniform(0.05, 0.1)
        d.line((rx, ry, rx - length * slant, ry + length), fill=rain, width=1)
    for _ in range(rng.randint(1, 2)):
        px, py = x0 + w * rng.random(), gy + (y1 - gy) * rng.uniform(0.3, 0.7)
        d.ellipse((px - s * 0.12, py - s * 0.03, px + s * 0.12, py + s * 0.03), fill=(70, 80, 110))


def _plate(d: Draw, rng: random.Random, box: Box, colour: RGB, rim: RGB) -> tuple[float, float, float, float]:
    x0, y0, _, _, w, h = _dims(box)
    cx, cy = x0 + w * rng.uniform(0.4, 0.6), y0 + h * rng.uniform(0.5, 0.62)
    rx, ry = min(w, h * 1.6) * rng.uniform(0.32, 0.4), h * rng.uniform(0.22, 0.28)
    d.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=rim)
    d.ellipse((cx - rx * 0.8, cy - ry * 0.8, cx + rx * 0.8, cy + ry * 0.8), fill=colour)
    return cx, cy, rx, ry


def _food_pos(d: Draw, rng: random.Random, box: Box) -> None:
    x0, y0, x1, y1, w, h = _dims(box)
    d.rectangle(box, fill=_jit(rng, (250, 205, 150)))
    if rng.random() < 0.5:
        step = max(6, w // 8)
        for x in range(x0, x1, step * 2):
            d.rectangle((x, y0, x + step, y1), fill=_jit(rng, (235, 110, 100), 10))
    cx, cy, rx, ry = _plate(d, rng, box, (255, 255, 250), (215, 215, 210))
    foods = [(220, 50, 40), (60, 165, 60), (150, 90, 40), (250, 205, 50), (240, 140, 60)]
    for _ in range(rng.randint(14, 24)):
        a, r = rng.uniform(0, 2 * math.pi), rng.uniform(0, 0.7)
        fx, fy = cx + math.cos(a) * rx * r, cy + math.sin(a) * ry * r - ry * 0.2
        fr = min(rx, ry) * rng.uniform(0.15, 0.3)
        d.ellipse((fx - fr, fy - fr, fx + fr, fy + fr), fill=_jit(rng, rng.choice(foods), 15))
    for k in range(rng.randint(2, 3)):
        sx = cx - rx * 0.4 + k * rx * 0.4
        d.line([(sx + rng.uniform(-2, 2) * (i % 2), cy - ry - 3 - i * h * 0.04) for i in range(5)],
               fill=(250, 250, 250), width=max(1, w // 70))


def _food_neg(d: Draw, rng: random.Random, box: Box) -> None:
    x0, y0, _, _, w, h = _dims(box)
    d.rectangle(box, fill=_jit(rng, (70, 55, 45), 12))
    cx, cy, rx, ry = _plate(d, rng, box, _jit(rng, (125, 125, 130), 8), (150, 150, 150))
    for _ in range(rng.randint(2, 6)):
        fx, fy = cx + rx * rng.uniform(-0.6, 0.6), cy + ry * rng.uniform(-0.5, 0.5)
        d.ellipse((fx - 1.5, fy - 1.5, fx + 1.5, fy + 1.5), fill=(95, 70, 45))
    if rng.random() < 0.6:
        fx, fy = x0 + w * rng.uniform(0.1, 0.9), y0 + h * rng.uniform(0.1, 0.3)
        d.ellipse((fx - 4, fy - 2, fx, fy + 2), fill=(200, 200, 210))
        d.ellipse((fx - 2, fy - 2, fx + 2, fy + 2), fill=(10, 10, 10))


def _face_pos(d: Draw, rng: random.Random, box: Box) -> None:
    x0, y0, _, _, w, h = _dims(box)
    d.rectangle(box, fill=_jit(rng, rng.choice([(255, 190, 210), (170, 220, 255), (190, 240, 170)])))
    rad = min(w, h) * rng.uniform(0.28, 0.38)
    cx, cy = x0 + w * rng.uniform(0.4, 0.6), y0 + h * rng.uniform(0.42, 0.58)
    _face(d, rng, cx, cy, rad, (255, 210, 40), "smile")


def _face_neg(d: Draw, rng: random.Random, box: Box) -> None:
    x0, y0, _, _, w, h = _dims(box)
    d.rectangle(box, fill=_jit(rng, (45, 55, 85), 12))
    rad = min(w, h) * rng.uniform(0.28, 0.38)
    cx, cy = x0 + w * rng.uniform(0.4, 0.6), y0 + h * rng.uniform(0.42, 0.58)
    _face(d, rng, cx, cy, rad, (150, 170, 210), "cry")


def _battery(d: Draw, rng: random.Random, box: Box, level: float, fill: RGB, outline: RGB) -> None:
    x0, y0, _, _, w, h = _dims(box)
    bw, bh = w * rng.uniform(0.5, 0.65), h * rng.uniform(0.28, 0.36)
    bx, by = x0 + (w - bw) * rng.uniform(0.3, 0.6), y0 + (h - bh) * rng.uniform(0.35, 0.65)
    lw = max(2, int(min(w, h) * 0.03))
    d.rectangle((bx, by, bx + bw, by + bh), outline=outline, width=lw)
    d.rectangle((bx + bw, by + bh * 0.3, bx + bw + bw * 0.07, by + bh * 0.7), fill=outline)
    pad = lw + 2
    level_x = bx + pad + (bw - 2 * pad) * level
    d.rectangle((bx + pad, by + pad, level_x, by + bh - pad), fill=_jit(rng, fill, 10))


def _battery_pos(d: Draw, rng: random.Random, box: Box) -> None:
    d.rectangle(box, fill=_jit(rng, (228, 245, 228)))
    _battery(d, rng, box, rng.uniform(0.8, 1.0), (60, 200, 80), (60, 70, 60))


def _battery_neg(d: Draw, rng: random.Random, box: Box) -> None:
    x0, y0, _, _, w, h = _dims(box)
    d.rectangle(box, fill=_jit(rng, (40, 40, 46), 10))
    _battery(d, rng, box, rng.uniform(0.04, 0.1), (225, 40, 40), (170, 170, 175))
    ex, ey, s = x0 + w * rng.uniform(0.1, 0.2), y0 + h * rng.uniform(0.1, 0.2), min(w, h) * 0.08
    d.rectangle((ex - s * 0.2, ey, ex + s * 0.2, ey + s * 1.3), fill=(230, 40, 40))
    d.ellipse((ex - s * 0.25, ey + s * 1.6, ex + s * 0.25, ey + s * 2.1), fill=(230, 40, 40))


def _wifi(d: Draw, rng: random.Random, box: Box, colour: RGB | None, outline: RGB
          ) -> tuple[float, float, float]:
    x0, y0, _, _, w, h = _dims(box)
    cx, cy = x0 + w * rng.uniform(0.4, 0.6), y0 + h * rng.uniform(0.65, 0.75)
    rad = min(w, h) * rng.uniform(0.45, 0.55)
    width = max(2, int(rad * 0.14))
    for k in (1.0, 0.7, 0.4):
        r = rad * k
        d.arc((cx - r, cy - r, cx + r, cy + r), 225, 315, fill=colour or outline,
              width=width if colour else 2)
    d.ellipse((cx - width, cy - width, cx + width, cy + width), fill=colour or outline)
    return cx, cy, rad


def _signal_pos(d: Draw, rng: random.Random, box: Box) -> None:
    d.rectangle(box, fill=_jit(rng, (225, 240, 255)))
    _wifi(d, rng, box, _jit(rng, rng.choice([(30, 150, 235), (40, 190, 90)]), 15), (0, 0, 0))


def _signal_neg(d: Draw, rng: random.Random, box: Box) -> None:
    d.rectangle(box, fill=_jit(rng, (35, 40, 55), 10))
    cx, cy, rad = _wifi(d, rng, box, None, (100, 100, 110))
    s, lw = rad * 0.35, max(3, int(rad * 0.12))
    xx, yy = cx + rad * 0.45, cy - rad * 0.25
    d.line((xx - s, yy - s, xx + s, yy + s), fill=(225, 40, 40), width=lw)
    d.line((xx - s, yy + s, xx + s, yy - s), fill=(225, 40, 40), width=lw)


def _clock(d: Draw, rng: random.Random, box: Box) -> None:
    x0, y0, _, _, w, h = _dims(box)
    d.rectangle(box, fill=_jit(rng, (215, 205, 185), 12))
    cx, cy = x0 + w * rng.uniform(0.35, 0.65), y0 + h * rng.uniform(0.4, 0.6)
    r = min(w, h) * rng.uniform(0.28, 0.36)
    d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(240, 238, 232), outline=(90, 85, 80),
              width=max(2, int(r * 0.08)))
    for k in range(12):
        a = k * math.pi / 6
        d.line((cx + math.cos(a) * r * 0.8, cy + math.sin(a) * r * 0.8, cx + math.cos(a) * r * 0.92,
                cy + math.sin(a) * r * 0.92), fill=(90, 85, 80), width=1)
    for length, width in ((0.5, 3), (0.75, 2)):
        a = rng.uniform(0, 2 * math.pi)
        tip = (cx + math.cos(a) * r * length, cy + math.sin(a) * r * length)
        d.line((cx, cy, *tip), fill=(50, 50, 50), width=width)


def _calendar(d: Draw, rng: random.Random, box: Box) -> None:
    x0, y0, _, _, w, h = _dims(box)
    d.rectangle(box, fill=_jit(rng, (198, 198, 204), 12))
    px, py = x0 + w * rng.uniform(0.15, 0.25), y0 + h * rng.uniform(0.12, 0.22)
    pw, ph = w * rng.uniform(0.55, 0.65), h * rng.uniform(0.6, 0.7)
    d.rectangle((px, py, px + pw, py + ph), fill=(242, 242, 240))
    d.rectangle((px, py, px + pw, py + ph * 0.2), fill=_jit(rng, (120, 130, 150), 12))
    for i in range(1, 7):
        d.line((px + pw * i / 7, py + ph * 0.2, px + pw * i / 7, py + ph), fill=(185, 185, 190), width=1)
    for j in range(1, 5):
        yy = py + ph * 0.2 + ph * 0.8 * j / 5
        d.line((px, yy, px + pw, yy), fill=(185, 185, 190), width=1)


def _building(d: Draw, rng: random.Random, box: Box) -> None:
    x0, y0, x1, y1, w, h = _dims(box)
    d.rectangle(box, fill=_jit(rng, (190, 195, 200), 10))
    d.rectangle((x0, y0 + h * 0.85, x1, y1), fill=_jit(rng, (130, 130, 128), 8))
    for _ in range(rng.randint(1, 3)):
        bw, bh = w * rng.uniform(0.25, 0.45), h * rng.uniform(0.45, 0.75)
        bx = x0 + (w - bw) * rng.random()
        by = y0 + h * 0.85 - bh
        d.rectangle((bx, by, bx + bw, y0 + h * 0.85), fill=_jit(rng, (150, 150, 156), 10))
        cols, rows = rng.randint(2, 4), rng.randint(3, 6)
        for c in range(cols):
            for r in range(rows):
                wx, wy = bx + bw * (c + 0.25) / cols, by + bh * (r + 0.25) / rows
                d.rectangle((wx, wy, wx + bw * 0.5 / cols, wy + bh * 0.5 / rows), fill=(110, 116, 126))


def _sun_in_storm(d: Draw, rng: random.Random, box: Box) -> None:
    x0, y0, _, _, w, h = _dims(box)
    _weather_neg(d, rng, box)
    rad = min(w, h) * rng.uniform(0.2, 0.26)
    cx, cy = x0 + w * rng.uniform(0.35, 0.65), y0 + h * rng.uniform(0.4, 0.55)
    _sun(d, rng, cx, cy, rad * 0.85)
    _face(d, rng, cx, cy, rad * 0.85, (252, 215, 40), "smile")
    d.rectangle((cx - rad * 0.6, cy - rad * 0.35, cx + rad * 0.6, cy - rad * 0.1), fill=(15, 15, 15))


def _this_is_fine(d: Draw, rng: random.Random, box: Box) -> None:
    x0, y0, x1, y1, w, h = _dims(box)
    d.rectangle(box, fill=_jit(rng, (95, 35, 20), 12))
    flames = [(255, 125, 20), (255, 200, 40), (220, 45, 20)]
    for _ in range(rng.randint(10, 16)):
        fx, fw, fh = x0 + w * rng.random(), w * rng.uniform(0.08, 0.16), h * rng.uniform(0.25, 0.6)
        d.polygon([(fx - fw, y1), (fx + fw, y1), (fx + rng.uniform(-fw, fw) * 0.5, y1 - fh)],
                  fill=_jit(rng, rng.choice(flames), 15))
    rad = min(w, h) * rng.uniform(0.2, 0.26)
    cx, cy = x0 + w * rng.uniform(0.4, 0.6), y0 + h * rng.uniform(0.35, 0.45)
    _face(d, rng, cx, cy, rad, (255, 210, 40), "smile")
    if rng.random() < 0.6:
        mx, my = x0 + w * 0.75, y0 + h * 0.5
        d.rectangle((mx, my, mx + w * 0.08, my + h * 0.12), fill=(240, 240, 235))


def _expectation_reality(d: Draw, rng: random.Random, box: Box) -> None:
    x0, y0, x1, y1, w, h = _dims(box)
    theme = rng.choice(POS_NEG_SCENES)
    mid = x0 + w // 2
    left, right = (x0, y0, mid, y1), (mid, y0, x1, y1)
    SCENES[(POS, theme)](d, rng, left)
    SCENES[(NEG, theme)](d, rng, right)
    d.line((mid, y0, mid, y1), fill=(255, 255, 255), width=max(2, w // 40))
    for part in (left, right):
        px0, _, px1, _ = part
        lx0, lx1 = px0 + (px1 - px0) * 0.15, px1 - (px1 - px0) * 0.15
        d.rectangle((lx0, y0 + 3, lx1, y0 + 3 + h * 0.11), fill=(255, 255, 255))
        text_box = (int(lx0) + 2, y0 + 4, int(lx1) - 2, y0 + 2 + int(h * 0.11))
        _squiggles(d, rng, text_box, (20, 20, 20), lines=1)


def _crying_in_sunshine(d: Draw, rng: random.Random, box: Box) -> None:
    x0, y0, _, _, w, h = _dims(box)
    _weather_pos(d, rng, box)
    rad = min(w, h) * rng.uniform(0.24, 0.3)
    _face(d, rng, x0 + w * rng.uniform(0.4, 0.6), y0 + h * rng.uniform(0.5, 0.6), rad, (150, 170, 210), "cry")


SceneFn = Callable[[Draw, random.Random, Box], None]
SCENES: dict[tuple[str, str], SceneFn] = {
    (POS, "weather"): _weather_pos, (NEG, "weather"): _weather_neg,
    (POS, "food"): _food_pos, (NEG, "food"): _food_neg,
    (POS, "face"): _face_pos, (NEG, "face"): _face_neg,
    (POS, "battery"): _battery_pos, (NEG, "battery"): _battery_neg,
    (POS, "signal"): _signal_pos, (NEG, "signal"): _signal_neg,
    (NEUTRAL, "clock"): _clock, (NEUTRAL, "calendar"): _calendar, (NEUTRAL, "building"): _building,
    (IRONIC, "sun_in_storm"): _sun_in_storm, (IRONIC, "this_is_fine"): _this_is_fine,
    (IRONIC, "expectation_reality"): _expectation_reality,
    (IRONIC, "crying_in_sunshine"): _crying_in_sunshine,
}


def _squiggles(d: Draw, rng: random.Random, box: Box, colour: RGB, lines: int) -> None:
    """Zigzag 'words' that stand for meme text."""
    x0, y0, x1, y1, _, h = _dims(box)
    line_h = h / lines
    for li in range(lines):
        cy = y0 + line_h * (li + 0.5)
        amp = max(1.0, line_h * 0.25)
        x = x0 + rng.uniform(0, 6)
        while x < x1 - 6:
            word = rng.uniform(5, 18)
            pts = [(x + i * 2.0, cy + (amp if i % 2 else -amp) * rng.uniform(0.4, 1))
                   for i in range(int(word / 2))]
            if len(pts) > 1:
                d.line(pts, fill=colour, width=1)
            x += word + rng.uniform(3, 6)


def _meme_bar(d: Draw, rng: random.Random, w: int, h: int) -> None:
    bar_h = int(h * rng.uniform(0.13, 0.2))
    places = rng.choice([("top",), ("bottom",), ("top", "bottom")])
    white = rng.random() < 0.6
    bg, fg = ((255, 255, 255), (15, 15, 15)) if white else ((10, 10, 10), (240, 240, 240))
    for where in places:
        y0 = 0 if where == "top" else h - bar_h
        d.rectangle((0, y0, w, y0 + bar_h), fill=bg)
        _squiggles(d, rng, (3, y0 + 2, w - 3, y0 + bar_h - 2), fg, lines=rng.randint(1, 2))


@functools.cache
def _noise_bank(height: int, width: int) -> np.ndarray:
    # Cropping one fixed noise field is ~7x faster than drawing fresh Gaussian noise per image.
    bank = np.random.default_rng(12345).standard_normal((256, 1024, 3)) * 3
    reps = (-(-height // 256) + 1, -(-width // 1024) + 1, 1)
    return np.tile(np.rint(bank).astype(np.int16), reps)


def _add_noise(img: Image.Image, rng: random.Random) -> Image.Image:
    w, h = img.size
    bank = _noise_bank(h, w)
    oy, ox = rng.randrange(bank.shape[0] - h), rng.randrange(bank.shape[1] - w)
    noisy = np.asarray(img, dtype=np.int16) + bank[oy : oy + h, ox : ox + w] * rng.randint(1, 3)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _render(spec: _ImageSpec) -> bytes:
    rng = random.Random(spec.seed)
    img = Image.new("RGB", (spec.width, spec.height))
    d = ImageDraw.Draw(img)
    SCENES[(spec.kind, spec.scene)](d, rng, (0, 0, spec.width, spec.height))
    if rng.random() < MEME_BAR_RATE:
        _meme_bar(d, rng, spec.width, spec.height)
    img = _add_noise(img, rng)
    if spec.resize_to is not None:
        img = img.resize(spec.resize_to, Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    if spec.fmt == "PNG":
        img.save(buf, "PNG")
    else:
        img.save(buf, "JPEG", quality=spec.quality)
    data = buf.getvalue()
    # Cutting inside the entropy-coded scan keeps the header readable but the pixels undecodable.
    return data[: len(data) // 2] if spec.truncate else data


# ------------------------------------------------------------------------------------------- specs


def _new_image(rng: random.Random, kind: str, topic: str, size: int) -> _ImageSpec:
    if kind in (POS, NEG):
        scene = TOPIC_THEME[topic]
    else:
        scene = rng.choice(NEUTRAL_SCENES if kind == NEUTRAL else IRONIC_SCENES)
    return _ImageSpec(kind=kind, scene=scene, seed=rng.getrandbits(48), width=size, height=size,
                      quality=rng.randint(70, 95))


def _label_sequence(rng: random.Random, n: int) -> list[str]:
    """Exact class counts (largest remainder) in a random order, so small n still has rare classes."""
    raw = {label: share * n for label, share in LABEL_SHARES.items()}
    counts = {label: int(v) for label, v in raw.items()}
    for label in sorted(raw, key=lambda lb: raw[lb] - counts[lb], reverse=True)[: n - sum(counts.values())]:
        counts[label] += 1
    labels = [label for label, c in counts.items() for _ in range(c)]
    rng.shuffle(labels)
    return labels


def _reuse_caption(rng: random.Random, label: str, pool: list[tuple[str, str, str, str]]
                   ) -> tuple[str, str, str, str] | None:
    """An earlier caption that can carry `label`: (caption, caption kind, topic, image kind it needs).

    Picking from the pool with repeats makes popular captions more popular, so groups of 3+ appear.
    """
    image_kind_for = {cap: img for (cap, img), _ in LABEL_COMBOS[label]}
    candidates = [entry for entry in pool if entry[1] in image_kind_for]
    same_label = [entry for entry in candidates if entry[3] == label]
    if same_label and rng.random() < SAME_LABEL_REUSE:
        candidates = same_label
    if not candidates:
        return None
    caption, cap_kind, topic, _ = rng.choice(candidates)
    return caption, cap_kind, topic, image_kind_for[cap_kind]


def _generate_split(rng: random.Random, n: int, split: str, first_id: int, size: int) -> list[_PostSpec]:
    posts: list[_PostSpec] = []
    pool: list[tuple[str, str, str, str]] = []  # (caption, caption kind, topic, label)
    next_id = first_id
    reuse_rate = CAPTION_REUSE_RATE if split == "train" else 0.0
    for label in _label_sequence(rng, n):
        reused = _reuse_caption(rng, label, pool) if rng.random() < reuse_rate else None
        if reused is not None:
            caption, cap_kind, topic, img_kind = reused
        else:
            cap_kind, img_kind = _weighted(rng, LABEL_COMBOS[label])  # type: ignore[misc]
            topic = rng.choice(TOPICS)
            caption = _compose_caption(rng, cap_kind, topic, split)
        pool.append((caption, cap_kind, topic, label))
        image = _new_image(rng, img_kind, topic, size)
        posts.append(_PostSpec(id=str(next_id), label=label, caption=caption, caption_kind=cap_kind,
                               image_kind=img_kind, topic=topic, images=[image]))
        next_id += 1 if rng.random() < 0.9 else 2  # gaps, as in the real files
    return posts


def _add_image_duplicates(rng: random.Random, posts: list[_PostSpec], n_exact: int, n_near: int) -> None:
    """Reuse an earlier post's drawing: identical bytes (exact) or re-encoded / resized (near)."""
    half = len(posts) // 2  # targets from the second half, so every target has earlier candidates
    targets = rng.sample(range(half, len(posts)), min(len(posts) - half, n_exact + n_near))
    target_set = set(targets)
    for i, t in enumerate(targets):
        post = posts[t]
        sources = [p for j, p in enumerate(posts[:t]) if j not in target_set and not p.tags
                   and (p.image_kind, p.images[0].scene) == (post.image_kind, post.images[0].scene)]
        if not sources:
            continue
        source = rng.choice(sources)
        source.tags.add("dup_image_source")
        spec = source.images[0]
        if i >= n_exact:
            if rng.random() < 0.5:
                spec = replace(spec, quality=spec.quality - rng.randint(12, 25))
            else:
                shrink = rng.randint(4, 12)
                spec = replace(spec, resize_to=(spec.width - shrink, spec.height - shrink))
        post.images = [spec]
        post.tags.add("dup_image")


def _add_leaks(rng: random.Random, train: list[_PostSpec], test: list[_PostSpec], n: int) -> None:
    sources = [p for p in train if not p.tags]
    n = min(n, len(sources), len(test))
    for pos, src in zip(rng.sample(range(len(test)), n), rng.sample(sources, n), strict=True):
        test[pos] = replace(src, id=test[pos].id, images=list(src.images), faults=set(), tags={"leak"})
        src.tags.add("leak_source")


def _inject_faults(rng: random.Random, posts: list[_PostSpec], size: int) -> None:
    counts = fault_counts(len(posts))
    captions = Counter(p.caption for p in posts)
    # Faults go to posts that share no caption or file, so each fault is counted once and exactly.
    free = [p for p in posts if not p.tags]
    if len(free) < sum(counts.values()):
        raise ValueError(f"inject_faults needs more train posts than {len(posts)} (try at least 40)")
    rng.shuffle(free)
    free.sort(key=lambda p: captions[p.caption] > 1)  # stable: unique captions first
    taken: set[str] = set()

    def pick(n: int, kinds: tuple[str, ...] = KINDS) -> list[_PostSpec]:
        chosen = [p for p in free if p.id not in taken and p.caption_kind in kinds][:n]
        if len(chosen) < n:  # tiny data sets: fall back to posts of any caption kind
            chosen += [p for p in free if p.id not in taken and p not in chosen][: n - len(chosen)]
        taken.update(p.id for p in chosen)
        return chosen

    for p in pick(counts["emoji_only_caption"], (NEUTRAL,)):
        p.caption, p.faults = rng.choice(EMOJI_ONLY), {"emoji_only_caption"}
    for p in pick(counts["empty_caption"], (NEUTRAL,)):
        p.caption, p.faults = "", {"empty_caption"}
    for p in pick(counts["long_caption"], (POS, NEG)):
        p.caption, p.faults = _long_caption(rng, p.caption_kind, p.topic), {"long_caption"}
    for p in pick(counts["png_as_jpg"]):
        p.images, p.faults = [replace(p.images[0], fmt="PNG")], {"png_as_jpg"}
    for p in pick(counts["panorama"]):
        p.images, p.faults = [replace(p.images[0], width=round(size * 3.3))], {"panorama"}
    for p in pick(counts["truncated_image"]):
        p.images, p.faults = [replace(p.images[0], truncate=True)], {"truncated_image"}
    for p in pick(counts["missing_image"]):
        p.missing, p.faults = True, {"missing_image"}
    for p in pick(counts["image_list"]):
        p.images.append(_new_image(rng, p.image_kind, p.topic, size))
        p.image_as_list, p.faults = True, {"image_list"}


def _generate_specs(n_train: int, n_test: int, seed: int, image_size: int, inject_faults: bool) -> _Specs:
    train = _generate_split(random.Random(f"mmtune-demo/{seed}/train"), n_train, "train", 0, image_size)
    rng = random.Random(f"mmtune-demo/{seed}/extras")
    n_dup = max(2, n_train // 250)
    _add_image_duplicates(rng, train, n_dup, n_dup)
    last_id = int(train[-1].id) if train else 0
    test_first = (last_id // 10_000 + 1) * 10_000  # test ids live in their own range
    test = _generate_split(random.Random(f"mmtune-demo/{seed}/test"), n_test, "test", test_first, image_size)
    _add_leaks(rng, train, test, min(LEAKED_TEST_POSTS, n_test, n_train))
    if inject_faults:
        _inject_faults(random.Random(f"mmtune-demo/{seed}/faults"), train, image_size)
    return _Specs(train=train, test=test)


# ------------------------------------------------------------------------------------------ writing


def _write_split(posts: list[_PostSpec], json_path: Path, image_dir: Path, with_labels: bool,
                 cache: dict[_ImageSpec, tuple[bytes, str]]) -> None:
    image_dir.mkdir(parents=True, exist_ok=True)
    records: dict[str, dict[str, object]] = {}
    for post in posts:
        names = []
        for spec in post.images:
            if spec not in cache:
                data = _render(spec)
                cache[spec] = (data, hashlib.sha256(data).hexdigest() + ".jpg")
            data, name = cache[spec]
            names.append(name)
            path = image_dir / name
            if post.missing:
                path.unlink(missing_ok=True)  # a previous fault-free run may have written it
            else:
                path.write_bytes(data)
        records[post.id] = {"image": names if post.image_as_list else names[0], "caption": post.caption,
                            "label": post.label if with_labels else None}
    json_path.write_bytes(json.dumps(records, ensure_ascii=False, indent=2).encode("utf-8"))


def make_demo_data(root: Path, n_train: int = 2000, n_test: int = 400, seed: int = 0, image_size: int = 128,
                   inject_faults: bool = True) -> DemoData:
    """Write a ViMMSD-format train file, an unlabelled public test file, their images and an answer key."""
    root = Path(root)
    demo = DemoData(root=root, train=root / "vimmsd-train.json", train_images=root / "train-images",
                    test=root / "vimmsd-public-test.json", test_images=root / "test-images",
                    test_gold=root / "public-test-gold.csv")
    specs = _generate_specs(n_train, n_test, seed, image_size, inject_faults)
    root.mkdir(parents=True, exist_ok=True)
    cache: dict[_ImageSpec, tuple[bytes, str]] = {}
    _write_split(specs.train, demo.train, demo.train_images, True, cache)
    _write_split(specs.test, demo.test, demo.test_images, False, cache)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "label"])
    writer.writerows([p.id, p.label] for p in specs.test)
    demo.test_gold.write_bytes(buf.getvalue().encode("utf-8"))
    return demo
