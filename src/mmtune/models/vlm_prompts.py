"""Prompt templates and label words for the generative VLM kinds, and the checks run on them at start.

A template is a built-in name or the user's own text; `{text}` is replaced by the post's packed text (caption
and extra fields) and `{labels}` by the label words joined with ", ". The answer is scored (vlm-generative) or
pooled (vlm-head) right after the chat template's generation prompt.

Why the reasoning-style templates ask for the answer directly: the class logits are the likelihoods of the
label words right after the prompt, so no rationale is generated. The template walks the model through the
steps (what the image shows, what the caption says literally, whether they clash) before the answer slot,
the layout that helped the competitors' chain-of-thought prompts, without generating.
"""

from __future__ import annotations

import string

from mmtune.errors import InputError

BUILT_IN: dict[str, str] = {
    "vi": ("Đây là một bài đăng mạng xã hội gồm hình ảnh và chú thích.\nChú thích: {text}\n"
           "Hãy phân loại bài đăng vào một trong các nhãn: {labels}.\nChỉ trả lời bằng đúng một nhãn."),
    "en": ("This is a social media post with images and a caption.\nCaption: {text}\n"
           "Classify the post as one of: {labels}.\nAnswer with exactly one label."),
    "vi_short": "Chú thích: {text}\nNhãn ({labels}):",
    "en_short": "Caption: {text}\nLabel ({labels}):",
    "vi_reasoning": (
        "Đây là một bài đăng mạng xã hội gồm hình ảnh và chú thích.\nChú thích: {text}\n"
        "Suy nghĩ từng bước: (1) hình ảnh thể hiện điều gì; (2) chú thích nói gì theo nghĩa đen; "
        "(3) hình ảnh và chú thích có mâu thuẫn, phóng đại hay nói ngược không, và sự mỉa mai nằm ở ảnh, "
        "ở chữ hay ở cả hai.\nSau đó chọn một nhãn trong: {labels}.\nNhãn:"),
    "en_reasoning": (
        "This is a social media post with images and a caption.\nCaption: {text}\n"
        "Think step by step: (1) what the images show; (2) what the caption says literally; (3) whether the "
        "images and caption clash, exaggerate or say the opposite, and whether any sarcasm lies in the image, "
        "the text or both.\nThen choose one label from: {labels}.\nLabel:"),
}
PLACEHOLDERS = {"text", "labels"}


def resolve_template(prompt: str) -> str:
    """The template text for `model.vlm.prompt`; its placeholders are checked (InputError naming the key)."""
    template = BUILT_IN.get(prompt, prompt)
    try:
        fields = {name for _, name, spec, conv in string.Formatter().parse(template) if name is not None}
    except ValueError as error:  # an unmatched brace
        raise InputError(f"model.vlm.prompt: not a valid template ({error}); write literal braces as {{{{ }}}}") \
            from None
    unknown = sorted(fields - PLACEHOLDERS)
    if unknown:
        known = ", ".join(sorted(BUILT_IN))
        raise InputError(f"model.vlm.prompt: unknown placeholder {{{unknown[0]}}} (use {{text}} and {{labels}}; "
                         f"built-in templates: {known})")
    if "text" not in fields:
        raise InputError("model.vlm.prompt: the template has no {text} placeholder, so the model would never see "
                         f"the post; built-in templates: {', '.join(sorted(BUILT_IN))}")
    return template


def fill_template(template: str, text: str, label_words: list[str]) -> str:
    return template.format(text=text, labels=", ".join(label_words))


def resolve_label_words(labels: list[str], configured: dict[str, str]) -> list[str]:
    """The answer words of each label in model order; unknown, missing, empty or repeated words are InputErrors."""
    unknown = sorted(set(configured) - set(labels))
    if unknown:
        raise InputError(f"model.vlm.label_words.{unknown[0]}: not a label of this run (labels: {', '.join(labels)})")
    if configured and len(configured) < len(labels):
        missing = [label for label in labels if label not in configured]
        raise InputError(f"model.vlm.label_words.{missing[0]}: no words given; give words for every label "
                         "or for none")
    words = [configured.get(label, label).strip() for label in labels]
    for label, word in zip(labels, words):
        if not word:
            raise InputError(f"model.vlm.label_words.{label}: empty answer words")
    seen: dict[str, str] = {}
    for label, word in zip(labels, words):
        if word in seen:
            raise InputError(f"model.vlm.label_words.{label}: the same words {word!r} as label {seen[word]!r}")
        seen[word] = label
    return words
