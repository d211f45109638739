"""Hand-made post features: cheap surface counts of the RAW caption that normalization would erase.

Sarcasm often shows in form rather than words (a burst of `!!!`, `:))`, ALL CAPS, a hashtag run), and
the normalizer squeezes or rewrites exactly those, so the counts are taken from the raw text (only
Unicode NFC first, so that a decomposed diacritic counts as one character).

The vector, in `POST_FEATURE_NAMES` order: counts are `log1p`-scaled (heavy-tailed, e.g. 0 to 300
words), the uppercase ratio is kept as is (already in [0, 1]).

    emoji         emoji (a skin-toned or ZWJ sequence counts once)     emoji.emoji_count
    emoticons     text emoticons `:))`, `=)`, `:v`, `^^`, `T_T`, `<3`   the normalizer's emoticon pattern
    hashtags      `#tag` with at least one letter                       the normalizer's hashtag pattern
    mentions      `@name`                                               the normalizer's mention pattern
    urls          http(s)://, www., bare domains (fb.com/x)             the normalizer's URL pattern
    words         whitespace-separated tokens                           str.split
    characters    code points after NFC                                 len
    exclamations  `!` and fullwidth `！`
    questions     `?` and fullwidth `？`
    uppercase_ratio  upper-case letters / letters (0 without letters)
"""

from __future__ import annotations

import math
import unicodedata

import emoji
import torch

# Why the normalizer's private patterns: a feature must count exactly what normalization rewrites
# (the same URL, mention, hashtag and emoticon boundaries), not a second opinion of them.
from mmtune.data.text import _EMOTICON, _HASHTAG, _MENTION, _URL

POST_FEATURE_NAMES: tuple[str, ...] = (
    "emoji", "emoticons", "hashtags", "mentions", "urls", "words", "characters", "exclamations", "questions",
    "uppercase_ratio",
)
NUM_POST_FEATURES = len(POST_FEATURE_NAMES)


def post_counts(text: str) -> dict[str, float]:
    """The raw (unscaled) features of one caption, by name."""
    text = unicodedata.normalize("NFC", text or "")
    letters = [c for c in text if c.isalpha()]
    upper = sum(1 for c in letters if c.isupper())
    return {
        "emoji": float(emoji.emoji_count(text)),
        "emoticons": float(sum(1 for _ in _EMOTICON.finditer(text))),
        "hashtags": float(len(_HASHTAG.findall(text))),
        "mentions": float(len(_MENTION.findall(text))),
        "urls": float(len(_URL.findall(text))),
        "words": float(len(text.split())),
        "characters": float(len(text)),
        "exclamations": float(text.count("!") + text.count("\uff01")),
        "questions": float(text.count("?") + text.count("\uff1f")),
        "uppercase_ratio": upper / len(letters) if letters else 0.0,
    }


def post_feature_vector(text: str) -> torch.Tensor:
    """The scaled feature vector [NUM_POST_FEATURES] (float32) of one raw caption."""
    counts = post_counts(text)
    values = [counts[name] if name == "uppercase_ratio" else math.log1p(counts[name]) for name in POST_FEATURE_NAMES]
    return torch.tensor(values, dtype=torch.float32)
