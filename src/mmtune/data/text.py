"""Text normalization for Vietnamese social-media posts, plus truncation and packing of text fields.

`TextNormalizer(cfg)(text)` runs these steps in this fixed order; each one is switched by a field of
`TextConfig` (the two marked "always" are not):

 1. invisible  (always) zero-width characters and soft hyphens removed, so that `k<ZWSP>o` is still
               a word for the later steps; a zero-width joiner inside an emoji sequence is kept.
 2. nfc        Unicode NFC: decomposed diacritics (`a` + U+0300) become one character (`à`).
 3. urls       http(s)://..., www...., bare domains (fb.com, youtu.be/x): keep | token `<url>` | drop.
               With `keep`, URLs are shielded from steps 4-9 so that they are not altered.
 4. mentions   `@name` (Unicode letters, digits, `_`, inner dots): keep | token `<user>` | drop.
 5. hashtags   `#tag` with at least one letter: keep | words (`#ThanhXuan_VuiVe` -> `Thanh Xuan Vui
               Ve`: the '#' goes, `_` and CamelCase boundaries become spaces) | drop.
 6. emoji      emoji and emoticons (`:))`, `=))`, `:)`, `:(`, `:D`, `xD`, `T_T`, `<3`, `:v`, `^^`,
               `:p`, `-_-`, `;)`): keep | drop | words (emoji via `emoji.demojize`, e.g.
               `:face_with_tears_of_joy:`; emoticons via EMOTICON_WORDS, e.g. `:))` -> `:smile:`).
 7. deobfuscate  a run of >= 2 single letters joined by `.`, `-`, `_` or `*` becomes one word
               (`c.h.ó` -> `chó`, `v*l` -> `vl`). Numbers, multi-letter words (`Đẹp.Quá`), ellipses,
               `v.v` (= etc.) and letter emoticons (`T_T`) are left alone.
 8. squeeze_repeats  a character repeated 3+ times becomes one (`!!!!` -> `!`, `điiii` -> `đi`),
               except: digits are never squeezed (`1000`); 4+ dots become `...`; 3+ parentheses become
               two, because `:)` (polite, often sarcastic) and `:))` (laughing) differ in meaning;
               emoji with a variation selector or skin tone count as one character; 3+ repeats of
               one `:emoji_word:` become one; a 3+ run of a plain vowel right after the same vowel
               with a diacritic is dropped when it ends the word (`quáaaa` -> `quá`, not `quáa`;
               `QUÁAAA` -> `QUÁ`). Doubles are left alone (`đẹpp`, `quáa`, `xoong`, `:))`).
 9. teencode   whole-word, case-insensitive expansion from `resources/teencode.tsv` plus
               `teencode_file` (`ko` -> `không`, `Ko` -> `Không`, `KO` -> `KHÔNG`). A short form
               right after a number and a space (`50 k`, `5 tr`), or touching `.x`, `:`, `@`, `#`, `/`
               (`v.v`, `:v`, `TP.HCM`) is not expanded.
10. lowercase  `str.lower()`.
11. whitespace (always) runs of whitespace incl. newlines become one space; ends stripped.
12. word_segment  pyvi `ViTokenizer` joins multi-syllable words with `_` (`Hôm nay` -> `Hôm_nay`) and
               splits punctuation off words; `<url>`, `<user>`, `:emoji_words:`, emoticons, URLs,
               `@mentions` and `#hashtags` are passed through whole.

Fields of several columns are normalized one by one and then packed by `pack_text`.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path

import emoji

from mmtune.config import TextConfig
from mmtune.data.textfile import read_text
from mmtune.errors import InputError

URL_TOKEN = "<url>"
USER_TOKEN = "<user>"

# ----------------------------------------------------------------------------------------------
# Patterns shared by the normalizer, is_emoji_only and caption_key


def _emoji_hint_class() -> str:
    """A regex class matching every non-ASCII code point used by an emoji: exact below U+10000
    (compiled to a bitmap), coarse above (two ranges), so that a search costs ~2 us per caption."""
    points = sorted({ord(c) for key in emoji.EMOJI_DATA for c in key if ord(c) > 127})
    ranges: list[tuple[int, int]] = []
    for cp in points:
        gap = 1 if cp < 0x10000 else 0x1000
        if ranges and cp - ranges[-1][1] <= gap:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))
    return "[" + "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges) + "]"


# A text without a hit has no emoji. Also matches a few non-emoji symbols near emoji in the astral
# planes, so a hit is only "maybe"; the emoji library decides, but only on these spans, because it
# costs ~45 us on a whole caption and ~4 us on a span.
_EMOJI_HINT = re.compile(_emoji_hint_class())
_EMOJI_SPAN = re.compile(rf"(?:{_EMOJI_HINT.pattern}|[#*0-9]\ufe0f?\u20e3)+")

# ZWJ (U+200D) glues emoji sequences together, so it is only dropped next to letters or spaces.
_INVISIBLE = re.compile(
    r"[\u200b\u200c\u200e\u200f\u2060\ufeff\u00ad]|\u200d(?=[\w\s]|$)|(?<=[\w\s])\u200d|^\u200d"
)
_ALL_INVISIBLE = re.compile(r"[\u200b-\u200f\u2060\ufeff\u00ad]")

_TLDS = "com|net|org|vn|io|me|ly|be|gg|tv|info|xyz|co"
# No re.IGNORECASE on URL patterns: with it, the ranges below would also exclude `k` and `å`
# (case variants of the Kelvin and Angstrom signs), cutting URLs short.
_URL_END = r"""[^\s<>"'\u2000-\U0010ffff.,!?;:)\]}]"""  # a URL does not end in punctuation
_URL_CHARS = r"""[^\s<>"'\u2000-\U0010ffff]"""  # Vietnamese letters (< U+2000) allowed, emoji not
_LABEL = "[a-zA-Z0-9-]"
_URL = re.compile(
    rf"(?:(?i:https?://|www\.)){_URL_CHARS}*{_URL_END}"
    # bare domain: the label before the TLD has 2+ characters unless a path follows (t.co/x)
    rf"|(?<![\w@./-])(?:{_LABEL}+\.)*"
    rf"(?:{_LABEL}{{2,}}\.(?i:{_TLDS})(?![\w-])(?:/(?:{_URL_CHARS}*{_URL_END})?)?"
    rf"|{_LABEL}+\.(?i:{_TLDS})/(?:{_URL_CHARS}*{_URL_END})?)"
)
# Cheap pre-check: every URL the pattern above finds contains one of these.
_URL_HINT = re.compile(rf"://|www\.|\.(?:{_TLDS})(?![\w-])", re.IGNORECASE)
_MENTION = re.compile(r"(?<![\w@])@\w+(?:\.\w+)*")
_HASHTAG = re.compile(r"(?<![\w&#])#(?=\w*[^\W\d_])(\w+)")

# (pattern, word for emoji='words'); order matters: longer forms first.
EMOTICON_WORDS: list[tuple[str, str]] = [
    (r"(?<![\d:=])[:=]-?\){2,}", "smile"),  # :)) =)))
    (r"(?<![\d:=])[:=]-?\)", "slight_smile"),  # :) =)
    (r"\^_*\^", "smile"),  # ^^ ^_^
    (r"(?<![\d:=])[:=]-?D(?!\w)", "laugh"),
    (r"(?<!\w)[xX]D(?!\w)", "laugh"),
    (r"(?<![\d:=])[:=]'?-?\(+(?!\d)", "sad"),  # :( :(( :'(  but not "Chú ý:(1)"
    (r"(?<!\w)T[_.]T(?!\w)", "sad"),
    (r"<3+(?!\d)", "heart"),  # not "<30 tuổi"
    (r"(?<![\d:=]):[vV](?!\w)", "smirk"),  # the Vietnamese "pacman" face, often ironic
    (r"(?<![\d:=])[:=]-?[pP](?!\w)", "tongue"),
    (r"-_+-", "meh"),
    (r"(?<![\d;]);-?\)+", "wink"),
]
# The leading look-ahead lets the engine skip positions that cannot start an emoticon.
_EMOTICON = re.compile(
    "(?=[:=^xXT<;-])(?:" + "|".join(f"(?P<e{i}>{p})" for i, (p, _) in enumerate(EMOTICON_WORDS)) + ")"
)
_EMOTICON_WORD = {f"e{i}": word for i, (_, word) in enumerate(EMOTICON_WORDS)}

_SEP = r"[.\-_*]"
_LETTER = r"[^\W\d_]"
# Starts with the separator class so that the engine can skip ahead to candidates.
_OBFUSCATION_HINT = re.compile(rf"{_SEP}(?<={_LETTER}{_SEP})(?={_LETTER})")
_OBFUSCATED = re.compile(rf"(?<![\w@#/])(?<!\w{_SEP}){_LETTER}(?:{_SEP}{_LETTER})+(?!\w)(?!{_SEP}\w)")

_MODIFIER = r"[\ufe0f\U0001f3fb-\U0001f3ff]"
_TRIPLE = re.compile(r"(\S)\1\1+")
_MODIFIED_TRIPLE = re.compile(rf"(\S{_MODIFIER})\1\1+")  # 👍🏻👍🏻👍🏻: emoji + skin tone or VS16
_HAS_MODIFIER = re.compile(_MODIFIER)
_EMOJI_WORD_REPEAT = re.compile(r"(:[^\s:]+:)(?:\s*\1){2,}")


def _accented_vowels() -> dict[str, str]:
    """Vowel with diacritics -> its plain vowel (same case): á -> a, Ư -> U, ệ -> e."""
    table = {}
    for cp in range(0xC0, 0x1F00):
        char = chr(cp)
        decomposed = unicodedata.normalize("NFD", char)
        if len(decomposed) > 1 and decomposed[0] in "aeiouyAEIOUY" and char.isalpha():
            table[char] = decomposed[0]
    return table


_VOWEL_BASE = _accented_vowels()

_WORD = re.compile(r"\w+")
# Punctuation and emoji; U+2139 (information emoji) is the one emoji code point that is a letter.
_NON_WORD = re.compile(r"[^\w\s]|[_\u2139]")
# Stand-ins for URLs kept verbatim: private-use marks around an index, which no step alters.
_SHIELD = re.compile("\ue000(\\d+)\ue001")

# ----------------------------------------------------------------------------------------------
# Teencode dictionary

TEENCODE_KEY = "data.text.teencode_file"


def read_teencode(path: str | Path) -> dict[str, str]:
    """Read a `short<TAB>expansion` TSV (UTF-8, `#` comments, blank lines) into a lower-case dict."""
    path = Path(path)
    lines = read_text(path, what=f"teencode file ({TEENCODE_KEY})").splitlines()
    return _parse_teencode(lines, str(path))


def _parse_teencode(lines: list[str], source: str) -> dict[str, str]:
    table: dict[str, str] = {}
    for lineno, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        short, tab, expansion = line.partition("\t")
        short = unicodedata.normalize("NFC", short.strip()).lower()
        expansion = unicodedata.normalize("NFC", expansion.strip())
        if not tab or not short or not expansion:
            raise InputError(f"{source}:{lineno}: expected 'short<TAB>expansion'")
        table[short] = expansion
    return table


@functools.lru_cache(maxsize=1)
def builtin_teencode() -> dict[str, str]:
    resource = importlib.resources.files("mmtune") / "resources" / "teencode.tsv"
    return _parse_teencode(resource.read_text(encoding="utf-8").splitlines(), "mmtune/resources/teencode.tsv")


def load_teencode(path: str | Path | None = None) -> dict[str, str]:
    """The built-in dictionary, updated with the entries of `path` when given."""
    table = dict(builtin_teencode())
    if path is not None:
        table.update(read_teencode(path))
    return table


def _match_case(short: str, expansion: str) -> str:
    if len(short) > 1 and short.isupper():
        return expansion.upper()
    if short[:1].isupper():
        return expansion[:1].upper() + expansion[1:]
    return expansion


# ----------------------------------------------------------------------------------------------
# The normalizer


class TextNormalizer:
    """Callable that normalizes one post's text as `TextConfig` says (steps: see module doc)."""

    def __init__(self, cfg: TextConfig) -> None:
        self.cfg = cfg
        self.teencode: dict[str, str] = load_teencode(cfg.teencode_file) if cfg.teencode else {}
        # One big alternation of all short forms costs ~80 us a caption; instead the words of a
        # caption are looked up in a set and a small pattern of just the hits is compiled (cached).
        self._single_word = {k for k in self.teencode if _WORD.fullmatch(k)}
        self._multi_word = [k for k in self.teencode if k not in self._single_word]
        self._teencode_patterns: dict[frozenset[str], re.Pattern[str]] = {}
        self._segment = _load_segmenter() if cfg.word_segment else None
        # URLs kept verbatim are shielded during the early steps and restored before the late ones.
        self._early, self._late = self._build_steps()

    def __call__(self, text: str) -> str:
        if not text:
            return ""
        shielded: list[str] = []
        if self.cfg.urls == "keep" and _URL_HINT.search(text):
            if "\ue000" in text:  # private-use marks in the input would clash with the stand-ins
                text = text.replace("\ue000", "")
            text = _URL.sub(lambda m: _stash(m.group(), shielded), text)
        for step in self._early:
            text = step(text)
        if shielded:
            text = _SHIELD.sub(lambda m: shielded[int(m.group(1))], text)
        for step in self._late:
            text = step(text)
        return text

    # -- assembly ------------------------------------------------------------------------------

    def _build_steps(self) -> tuple[list[Callable[[str], str]], list[Callable[[str], str]]]:
        cfg = self.cfg
        steps: list[Callable[[str], str]] = [_remove_invisible]
        if cfg.nfc:
            steps.append(_nfc)
        if cfg.urls != "keep":
            steps.append(_replacer(_URL, URL_TOKEN if cfg.urls == "token" else " ", _URL_HINT.search))
        if cfg.mentions != "keep":
            steps.append(_replacer(_MENTION, USER_TOKEN if cfg.mentions == "token" else " ", "@"))
        if cfg.hashtags != "keep":
            steps.append(_replacer(_HASHTAG, _hashtag_words if cfg.hashtags == "words" else " ", "#"))
        if cfg.emoji == "drop":
            steps.append(_drop_emoji)
        elif cfg.emoji == "words":
            steps.append(_emoji_words)
        if cfg.deobfuscate:
            steps.append(_deobfuscate)
        if cfg.squeeze_repeats:
            steps.append(_squeeze)
        if self.teencode:
            steps.append(self._teencode_step)
        late: list[Callable[[str], str]] = [str.lower] if cfg.lowercase else []
        late.append(_collapse_whitespace)
        if self._segment is not None:
            late.append(self._segment)
        return steps, late

    def _teencode_step(self, text: str) -> str:
        lowered = text.lower()
        hits = self._single_word.intersection(_WORD.findall(lowered))
        hits.update(k for k in self._multi_word if k in lowered)
        if not hits:
            return text
        key = frozenset(hits)
        pattern = self._teencode_patterns.get(key)
        if pattern is None:
            if len(self._teencode_patterns) >= 10_000:
                self._teencode_patterns.clear()
            pattern = self._teencode_patterns[key] = _teencode_pattern(key)
        return pattern.sub(self._expand, text)

    def _expand(self, match: re.Match[str]) -> str:
        short = match.group()
        if not _teencode_allowed(match.string, match.start()):
            return short
        return _match_case(short, self.teencode.get(short.lower(), short))


# ----------------------------------------------------------------------------------------------
# Steps


def _stash(url: str, shielded: list[str]) -> str:
    shielded.append(url)
    return f"\ue000{len(shielded) - 1}\ue001"


def _replacer(
    pattern: re.Pattern[str],
    repl: str | Callable[[re.Match[str]], str],
    hint: str | Callable[[str], object],
) -> Callable[[str], str]:
    """`pattern.sub(repl, text)`, skipped (cheaply) when the text lacks the substring / hint match."""

    def replace(text: str) -> str:
        if (hint in text) if isinstance(hint, str) else hint(text):
            return pattern.sub(repl, text)
        return text

    return replace


def _teencode_pattern(shorts: frozenset[str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(k) for k in sorted(shorts, key=len, reverse=True))
    # The left context is checked in _teencode_allowed: a look-behind here would stop the engine
    # from skipping ahead to the first letters of the alternatives (3x slower).
    return re.compile(rf"(?:{alternatives})(?!\w)(?!\.\w)", re.IGNORECASE)


def _teencode_allowed(text: str, start: int) -> bool:
    """Not inside a word, nor after `:` (:v), `@`, `#`, `/`, `x.` (v.v, TP.HCM) or a number and a
    space (50 k, 5 tr)."""
    if start == 0:
        return True
    prev = text[start - 1]
    if _is_word_char(prev) or prev in ":@#/":
        return False
    if start < 2:
        return True
    before = text[start - 2]
    return not ((prev == "." and _is_word_char(before)) or (prev.isspace() and before.isdigit()))


def _remove_invisible(text: str) -> str:
    return _INVISIBLE.sub("", text) if _ALL_INVISIBLE.search(text) else text


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _hashtag_words(match: re.Match[str]) -> str:
    return " " + " ".join(_split_camel(part) for part in match.group(1).split("_") if part) + " "


def _split_camel(word: str) -> str:
    """`ThanhXuan` -> `Thanh Xuan`, `HTMLParser` -> `HTML Parser`, `xuhuong` unchanged."""
    out = [word[:1]]
    for i in range(1, len(word)):
        prev, char = word[i - 1], word[i]
        nxt = word[i + 1] if i + 1 < len(word) else ""
        if char.isupper() and (prev.islower() or (prev.isupper() and nxt.islower())):
            out.append(" ")
        out.append(char)
    return "".join(out)


def _drop_emoji(text: str) -> str:
    text = _EMOTICON.sub(" ", text)
    return _EMOJI_SPAN.sub(lambda m: emoji.replace_emoji(m.group(), " "), text)


def _emoticon_word(match: re.Match[str]) -> str:
    return f" :{_EMOTICON_WORD[match.lastgroup or '']}: "


def _emoji_words(text: str) -> str:
    text = _EMOTICON.sub(_emoticon_word, text)
    return _EMOJI_SPAN.sub(lambda m: emoji.demojize(m.group(), delimiters=(" :", ": ")), text)


def _deobfuscate_match(match: re.Match[str]) -> str:
    found = match.group()
    if found.lower() == "v.v" or _EMOTICON.fullmatch(found):
        return found
    return re.sub(_SEP, "", found)


def _deobfuscate(text: str) -> str:
    return _OBFUSCATED.sub(_deobfuscate_match, text) if _OBFUSCATION_HINT.search(text) else text


def _squeeze_run(match: re.Match[str]) -> str:
    char = match.group(1)
    if char.isdigit():
        return match.group()
    if char == ".":
        return "..."
    if char in "()":
        return char * 2
    # quáaaa -> quá: the run repeats the vowel just before it, and ends the word.
    text, start, end = match.string, match.start(), match.end()
    if start and _VOWEL_BASE.get(text[start - 1], "").lower() == char.lower():
        if end == len(text) or not _is_word_char(text[end]):
            return ""
    return char


def _squeeze(text: str) -> str:
    text = _TRIPLE.sub(_squeeze_run, text)
    if _HAS_MODIFIER.search(text):
        text = _MODIFIED_TRIPLE.sub(r"\1", text)
    if ":" in text:
        text = _EMOJI_WORD_REPEAT.sub(r"\1", text)
    return text


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def _collapse_whitespace(text: str) -> str:
    return " ".join(text.split())


# Tokens that word segmentation must pass through whole (pyvi would split `<url>` into `< url >`).
_PROTECTED = re.compile(
    rf"({re.escape(URL_TOKEN)}|{re.escape(USER_TOKEN)}|(?<!\S):[^\s:]+:(?!\S)|{_URL.pattern}"
    rf"|{_MENTION.pattern}|(?<![\w&#])#\w+|"
    + "|".join(p for p, _ in EMOTICON_WORDS)
    + ")"
)


def _load_segmenter() -> Callable[[str], str]:
    try:
        from pyvi import ViTokenizer
    except ImportError:
        raise InputError(
            "data.text.word_segment needs the optional extra 'vi': pip install 'mmtune[vi]'"
        ) from None

    def segment(text: str) -> str:
        pieces = _PROTECTED.split(text)
        # split() with one group: even indices are free text, odd ones the protected tokens.
        out = [p if i % 2 else ViTokenizer.tokenize(p) for i, p in enumerate(pieces) if p and not p.isspace()]
        return " ".join(" ".join(out).split())

    return segment


# ----------------------------------------------------------------------------------------------
# Lengths, truncation, packing


def word_count(text: str) -> int:
    return len(text.split())


def truncate_words(text: str, budget: int, policy: str = "head") -> str:
    """Keep at most `budget` whitespace-separated words of `text`.

    head: the first words; tail: the last words; head_tail: the first ceil(2/3) and the last
    floor(1/3) of the budget (budget 1 keeps the first word), joined by one space with no marker.
    A text within budget is returned unchanged; a budget <= 0 gives "".
    """
    if policy not in ("head", "tail", "head_tail"):
        raise InputError(f"data.text.truncation must be 'head', 'tail' or 'head_tail', got {policy!r}")
    if budget <= 0:
        return ""
    words = text.split()
    if len(words) <= budget:
        return text
    if policy == "head":
        kept = words[:budget]
    elif policy == "tail":
        kept = words[-budget:]
    else:
        n_tail = budget // 3
        kept = words[: budget - n_tail] + (words[-n_tail:] if n_tail else [])
    return " ".join(kept)


def pack_text(main: str, extra: dict[str, str], cfg: TextConfig) -> str:
    """Main text (budget `max_words`) then each non-empty extra field as `name: text` (budget
    `extra_max_words`), joined by `field_sep`. Fields are expected to be normalized already."""
    parts = []
    main = truncate_words(main.strip(), cfg.max_words, cfg.truncation) if main else ""
    if main:
        parts.append(main)
    for name, value in extra.items():
        value = truncate_words(value.strip(), cfg.extra_max_words, cfg.truncation) if value else ""
        if value:
            parts.append(f"{name}: {value}")
    return cfg.field_sep.join(parts)


# ----------------------------------------------------------------------------------------------
# Caption-level helpers


def is_emoji_only(text: str) -> bool:
    """True for a non-empty text made of emoji/emoticons (and punctuation), with no letter or digit."""
    stripped = text.strip()
    rest = _EMOTICON.sub(" ", stripped)
    found = rest != stripped
    if _EMOJI_HINT.search(rest):
        if any(c.isalnum() for c in _EMOJI_SPAN.sub("", rest)):
            return False  # letters outside emoji: no need to ask the (slow) emoji library
        without = _EMOJI_SPAN.sub(lambda m: emoji.replace_emoji(m.group(), " "), rest)
        found = found or without != rest
        rest = without
    return found and not any(c.isalnum() for c in rest)


def caption_key(text: str) -> str:
    """Key grouping duplicate captions: NFC, lower-case, no URLs, emoji, emoticons, punctuation or
    extra spaces. Captions differing only in those get one key."""
    text = _ALL_INVISIBLE.sub("", unicodedata.normalize("NFC", text))
    if _URL_HINT.search(text):
        text = _URL.sub(" ", text)
    text = _EMOTICON.sub(" ", text)
    text = _NON_WORD.sub(" ", text.lower())
    return " ".join(text.split())
