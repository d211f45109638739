"""Text normalization: every step with its switch on and off, the whole pipeline, teencode files,
truncation, packing, emoji-only detection and duplicate-caption keys."""

from __future__ import annotations

import dataclasses
import re
import sys
import unicodedata
from pathlib import Path

import pytest

from mmtune.config import TextConfig
from mmtune.data.text import (
    TextNormalizer,
    builtin_teencode,
    caption_key,
    is_emoji_only,
    load_teencode,
    pack_text,
    truncate_words,
    word_count,
)
from mmtune.errors import InputError

# Every switchable step off: a row turns on just the step it tests.
ALL_OFF = TextConfig(
    nfc=False,
    lowercase=False,
    emoji="keep",
    hashtags="keep",
    urls="keep",
    mentions="keep",
    teencode=False,
    deobfuscate=False,
    squeeze_repeats=False,
    word_segment=False,
)


def normalize(text: str, **on: object) -> str:
    return TextNormalizer(dataclasses.replace(ALL_OFF, **on))(text)


# (field, value that turns the step on, input, expected with the step on, expected with it off)
STEPS = [
    ("nfc", True, "Ca\u0300 phe\u0302 su\u031b\u0303a", "Cà phê sữa", "Ca\u0300 phe\u0302 su\u031b\u0303a"),
    ("urls", "token", "Xem tại https://fb.com/abc?x=1. Hay", "Xem tại <url>. Hay", None),
    ("urls", "drop", "Xem tại https://fb.com/abc?x=1. Hay", "Xem tại . Hay", None),
    ("urls", "token", "www.youtube.com/watch?v=1, coi đi", "<url>, coi đi", None),
    ("urls", "token", "link nè fb.com/groups/meme nhé", "link nè <url> nhé", None),
    ("urls", "token", "xem youtu.be/xyz và t.co/abc", "xem <url> và <url>", None),
    ("urls", "token", "https://x.com/kooo hay", "<url> hay", None),
    ("mentions", "token", "@Nguyễn_Văn_A chê quá", "<user> chê quá", None),
    ("mentions", "drop", "@Nguyễn_Văn_A chê quá @lan.anh", "chê quá", None),
    ("hashtags", "words", "#ThanhXuan_VuiVe nha", "Thanh Xuan Vui Ve nha", None),
    ("hashtags", "words", "#xuhuong #ĐàNẵng #HTMLParser", "xuhuong Đà Nẵng HTML Parser", None),
    ("hashtags", "drop", "Vui ghê #xuhuong #ThanhXuan", "Vui ghê", None),
    ("emoji", "words", "Cười xỉu 😂", "Cười xỉu :face_with_tears_of_joy:", None),
    ("emoji", "words", "gia đình 👨\u200d👩\u200d👧", "gia đình :family_man_woman_girl:", None),
    ("emoji", "drop", "Cười xỉu 😂🤣 luôn", "Cười xỉu luôn", None),
    ("emoji", "words", "hay quá :)) =)))", "hay quá :smile: :smile:", None),
    ("emoji", "words", "ừ :) được thôi", "ừ :slight_smile: được thôi", None),
    ("emoji", "words", "buồn T_T :( <3 :v ^^", "buồn :sad: :sad: :heart: :smirk: :smile:", None),
    ("emoji", "drop", "Hay đấy :)) =)) <3 :v ^^ xD", "Hay đấy", None),
    ("deobfuscate", True, "thằng c.h.ó", "thằng chó", None),
    ("deobfuscate", True, "đ.m n-g-u v*l", "đm ngu vl", None),
    ("deobfuscate", True, "T_H_Ằ_N_G ngốc", "THẰNG ngốc", None),
    ("squeeze_repeats", True, "quáaaaa", "quá", None),
    ("squeeze_repeats", True, "ĐẸP QUÁAAA", "ĐẸP QUÁ", None),
    ("squeeze_repeats", True, "điiiii chơiii", "đi chơi", None),
    ("squeeze_repeats", True, "thật á!!!!! sao?????", "thật á! sao?", None),
    ("squeeze_repeats", True, "thôi......", "thôi...", None),
    ("squeeze_repeats", True, "=)))))) :((((", "=)) :((", None),
    ("squeeze_repeats", True, "😂😂😂😂 👍🏻👍🏻👍🏻 ❤️❤️❤️", "😂 👍🏻 ❤️", None),
    ("teencode", True, "ko bt j", "không biết gì", None),
    ("teencode", True, "Ko đc, KO, mn ơi", "Không được, KHÔNG, mọi người ơi", None),
    ("teencode", True, "ny tui ns r", "người yêu tui nói rồi", None),
    ("teencode", True, "tr ơi, sao z?", "trời ơi, sao vậy?", None),
    ("teencode", True, "k\u200bo", "không", "ko"),
    ("lowercase", True, "Hôm Nay ĐẸP", "hôm nay đẹp", None),
]


@pytest.mark.parametrize(("field", "value", "text", "on", "off"), STEPS)
def test_each_step_on_and_off(field: str, value: object, text: str, on: str, off: str | None) -> None:
    off = text if off is None else off
    assert on != off  # else a switch that does nothing would pass
    assert normalize(text, **{field: value}) == on
    assert normalize(text) == off


# Text that a switched-on step must leave as it is.
UNTOUCHED = [
    ("urls", "token", "Đẹp.Quá và 3.14 và m.me"),
    ("urls", "token", "mail a@gmail.com"),
    ("mentions", "token", "mail a@gmail.com, gặp @ quán"),
    ("hashtags", "words", "top #1 nè"),
    ("emoji", "words", "lúc 10:30 chú:vâng, <30 tuổi, Chú ý:(1)"),
    ("deobfuscate", True, "3.14 10.000 hay quá... Đẹp.Quá e-mail v.v..."),
    ("deobfuscate", True, "a.b.Đẹp buồn T_T"),
    ("squeeze_repeats", True, "1000000 đẹpp xoong quáa ... :)) 😂😂"),
    ("teencode", True, "50 k, 5 tr, kho, v.v, :v, TP.HCM, @ko #ko bít tết"),
]


@pytest.mark.parametrize(("field", "value", "text"), UNTOUCHED)
def test_step_leaves_lookalikes_alone(field: str, value: object, text: str) -> None:
    assert normalize(text, **{field: value}) == text


def test_repeated_emoji_words_are_squeezed() -> None:
    text = "😂😂😂"
    assert normalize(text, emoji="words", squeeze_repeats=True) == ":face_with_tears_of_joy:"
    assert normalize(text, emoji="words") == " ".join([":face_with_tears_of_joy:"] * 3)


def test_whitespace_is_always_collapsed() -> None:
    assert normalize("  Trời \n\n ơi\u200b\tđẹp\u00a0quá  ") == "Trời ơi đẹp quá"
    assert TextNormalizer(ALL_OFF)("") == ""


def test_kept_urls_are_not_altered_by_later_steps() -> None:
    text = "coi https://fb.com/c.h.ooo?ko=1 ko!!!"
    expected = "coi https://fb.com/c.h.ooo?ko=1 không!"
    assert normalize(text, urls="keep", deobfuscate=True, squeeze_repeats=True, teencode=True) == expected


def test_whole_pipeline_on_a_meme_caption() -> None:
    caption = (
        'Khi mn hỏi:  "Sao ko đi học?"\nTui: bt r, nhưng lười quáaaa 😂😂😂 =))))) '
        "#SinhVien_NamCuoi @Lan_Anh https://fb.com/meme c.h.á.n"
    )
    expected_default = (
        'Khi mọi người hỏi: "Sao không đi học?" Tui: biết rồi, nhưng lười quá 😂 =)) '
        "Sinh Vien Nam Cuoi <user> <url> chán"
    )
    assert TextNormalizer(TextConfig())(caption) == expected_default
    expected_words = (
        'khi mọi người hỏi: "sao không đi học?" tui: biết rồi, nhưng lười quá :face_with_tears_of_joy: '
        ":smile: sinh vien nam cuoi <user> <url> chán"
    )
    assert TextNormalizer(TextConfig(emoji="words", lowercase=True))(caption) == expected_words


# ----------------------------------------------------------------------------------------------
# Teencode dictionaries


def test_builtin_teencode_is_sane() -> None:
    table = builtin_teencode()
    assert 80 <= len(table) <= 150
    assert all(k == unicodedata.normalize("NFC", k).lower() and v and k != v for k, v in table.items())
    # Real words and too-ambiguous single letters stay out.
    assert not {"a", "e", "b", "c", "m", "t", "bít", "bùn", "có", "hay", "kg", "dt"} & table.keys()
    assert table["bt"] == "biết" and table["ko"] == "không" and table["đc"] == "được"


def test_user_teencode_file_adds_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "teen.tsv"
    path.write_text("# mine\n\nbt\tbình thường\nxl\txin lỗi\nsao z\tsao vậy trời\n", encoding="utf-8")
    table = load_teencode(path)
    assert table["bt"] == "bình thường" and table["xl"] == "xin lỗi" and table["ko"] == "không"
    normalizer = TextNormalizer(dataclasses.replace(ALL_OFF, teencode=True, teencode_file=str(path)))
    assert normalizer("bt thôi, xl nha, sao z") == "bình thường thôi, xin lỗi nha, sao vậy trời"


@pytest.mark.parametrize(
    ("content", "lineno"),
    [("ko\tkhông\nbt biết\n", 2), ("# c\n\nko\t\n", 3), ("\tkhông\n", 1)],
)
def test_malformed_teencode_file(tmp_path: Path, content: str, lineno: int) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError) as caught:
        TextNormalizer(TextConfig(teencode_file=str(path)))
    assert str(caught.value) == f"{path}:{lineno}: expected 'short<TAB>expansion'"


def test_missing_teencode_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.tsv"
    with pytest.raises(InputError, match=re.escape(str(path)) + r".*data\.text\.teencode_file"):
        TextNormalizer(TextConfig(teencode_file=str(path)))


# ----------------------------------------------------------------------------------------------
# Word segmentation


def test_word_segmentation_with_pyvi() -> None:
    pytest.importorskip("pyvi")
    assert normalize("Hôm nay trời đẹp quá", word_segment=True) == "Hôm_nay trời đẹp quá"
    assert normalize("Hôm nay trời đẹp quá") == "Hôm nay trời đẹp quá"
    # Special tokens pass through whole (pyvi alone would give "< url >").
    text = "<url> Sinh viên :face_with_tears_of_joy: :)) <user>"
    assert normalize(text, word_segment=True) == "<url> Sinh_viên :face_with_tears_of_joy: :)) <user>"


def test_word_segmentation_without_pyvi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyvi", None)  # makes `import pyvi` raise ImportError
    with pytest.raises(InputError, match=r"data\.text\.word_segment.*mmtune\[vi\]"):
        TextNormalizer(TextConfig(word_segment=True))


# ----------------------------------------------------------------------------------------------
# Lengths, truncation, packing

TEN = " ".join(f"w{i}" for i in range(1, 11))


@pytest.mark.parametrize(
    ("budget", "policy", "expected"),
    [
        (6, "head", "w1 w2 w3 w4 w5 w6"),
        (6, "tail", "w5 w6 w7 w8 w9 w10"),
        (6, "head_tail", "w1 w2 w3 w4 w9 w10"),
        (4, "head_tail", "w1 w2 w3 w10"),
        (1, "head_tail", "w1"),
        (10, "head", TEN),
        (0, "head", ""),
    ],
)
def test_truncate_words(budget: int, policy: str, expected: str) -> None:
    assert truncate_words(TEN, budget, policy) == expected


def test_truncate_within_budget_is_unchanged_and_bad_policy_fails() -> None:
    assert truncate_words("a  b\nc", 3, "tail") == "a  b\nc"
    assert word_count("  Trời  đẹp\nquá ") == 3 and word_count("") == 0
    with pytest.raises(InputError, match="data.text.truncation"):
        truncate_words(TEN, 3, "middle")


def test_pack_text_budgets_prefixes_and_empty_fields() -> None:
    cfg = TextConfig(max_words=3, extra_max_words=2)
    packed = pack_text("một hai ba bốn năm", {"ocr": "chữ trên ảnh", "note": "  ", "tag": ""}, cfg)
    assert packed == "một hai ba | ocr: chữ trên"
    tail = dataclasses.replace(cfg, truncation="tail", field_sep=" [SEP] ")
    assert pack_text("một hai ba bốn năm", {"ocr": "chữ trên ảnh"}, tail) == "ba bốn năm [SEP] ocr: trên ảnh"
    assert pack_text("", {"ocr": "chữ"}, cfg) == "ocr: chữ"
    assert pack_text("", {}, cfg) == ""


# ----------------------------------------------------------------------------------------------
# Caption-level helpers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("😂😂", True),
        ("=))", True),
        (":v", True),
        ("😂 :)) !!", True),
        ("👨\u200d👩\u200d👧", True),
        ("1️⃣", True),
        ("haha 😂", False),
        ("123 😂", False),
        ("", False),
        ("   ", False),
        ("!!!", False),
        ("ok", False),
        ("→ ★", False),
    ],
)
def test_is_emoji_only(text: str, expected: bool) -> None:
    assert is_emoji_only(text) is expected


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Hay QUÁ!!! 😂", "hay quá"),
        ("Đi học   thôi\n", "đi học thôi"),
        ("Cà phê", unicodedata.normalize("NFD", "Cà phê")),
        ("xem https://fb.com/x nhé", "xem nhé"),
        ("hay quá :))", "Hay quá =)"),
        ("hay quá 😂😂", "hay quá 🤣"),
        ("ok.con dê", "ok, con dê"),
        ("k\u200bo", "ko"),
    ],
)
def test_caption_key_groups_variants(a: str, b: str) -> None:
    assert caption_key(a) == caption_key(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [("hay quá", "hay quá trời"), ("chó", "chỗ"), ("ko", "không"), ("top 1", "top 2"), ("dê", "de")],
)
def test_caption_key_keeps_different_captions_apart(a: str, b: str) -> None:
    assert caption_key(a) != caption_key(b)
