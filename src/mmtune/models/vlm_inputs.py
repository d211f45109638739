"""Posts into VLM inputs: chat-rendered prompts, images within a budget, and the label answers' token ids.

`VlmInputs` is shared by both VLM kinds. `prepare` normalizes the text; `encode` renders each post's prompt
with the chat template (images first, then the filled prompt template) and runs the processor with the image
budget; `answers` are the token ids of every label's answer (its words and the end-of-turn token), as the chat
template renders an assistant turn after the generation prompt, checked once at start.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from mmtune.config import Config
from mmtune.data.post import Post
from mmtune.errors import InputError
from mmtune.models.base import Example
from mmtune.models.examples import ExampleMaker
from mmtune.models.image_pipeline import ImagePipeline
from mmtune.models.vlm_loading import LoadedVlm
from mmtune.models.vlm_prompts import fill_template, resolve_label_words, resolve_template

log = logging.getLogger(__name__)


@dataclass
class LabelWordReport:
    """What the start-up check found in the label answers' tokens."""

    pieces: dict[str, list[str]] = field(default_factory=dict)  # label -> answer pieces
    texts: dict[str, list[str]] = field(default_factory=dict)  # label -> the pieces' text as a person reads it
    byte_fallback: list[str] = field(default_factory=list)  # labels spelled partly in <0xNN> byte pieces
    shared_first: list[tuple[str, str]] = field(default_factory=list)  # label pairs with the same first token


class VlmInputs:
    def __init__(self, cfg: Config, loaded: LoadedVlm, labels: list[str]) -> None:
        vlm = cfg.model.vlm
        self.cfg = cfg
        self.loaded = loaded
        self.labels = list(labels)
        self.template = resolve_template(vlm.prompt)
        self.words = resolve_label_words(self.labels, vlm.label_words)
        self.chat_template = vlm.chat_template or getattr(loaded.processor, "chat_template", None) \
            or loaded.tokenizer.chat_template
        if not self.chat_template:
            raise InputError(f"model.vlm.chat_template: {cfg.model.name} ships no chat template; give one")
        if vlm.max_images < 1:
            raise InputError(f"model.vlm.max_images: must be at least 1, got {vlm.max_images}")
        self.examples = ExampleMaker(labels, cfg.data.text)
        self.images = ImagePipeline(cfg.data.image, fit="within", side=vlm.image_size)
        self.flip_images = False
        self.nested_images = loaded.family.nested_images
        self.image_kwargs = image_budget_kwargs(loaded, vlm) if loaded.has_vision else {}
        self.answers, self.report = self._answers()

    # ------------------------------------------------------------------------------------ prompts

    def messages(self, text: str, n_images: int, answer: str | None = None) -> list[dict[str, Any]]:
        prompt = fill_template(self.template, text, self.words)
        content: Any = prompt
        if self.loaded.has_vision:
            content = [{"type": "image"}] * n_images + [{"type": "text", "text": prompt}]
        messages = [{"role": "user", "content": content}]
        if self.cfg.model.vlm.system_prompt:
            messages.insert(0, {"role": "system", "content": self.cfg.model.vlm.system_prompt})
        if answer is not None:
            reply: Any = [{"type": "text", "text": answer}] if self.loaded.has_vision else answer
            messages.append({"role": "assistant", "content": reply})
        return messages

    def render(self, text: str, n_images: int, answer: str | None = None) -> str:
        try:
            return self.loaded.tokenizer.apply_chat_template(
                self.messages(text, n_images, answer), chat_template=self.chat_template, tokenize=False,
                add_generation_prompt=answer is None)
        except Exception as error:  # jinja2 raises its own TemplateError family
            raise InputError(f"model.vlm.chat_template: cannot render a conversation ({error})") from None

    def _answers(self) -> tuple[list[list[int]], LabelWordReport]:
        """Every label's answer ids, read off the rendered conversation, and the check of their pieces."""
        tokenizer = self.loaded.tokenizer
        prompt = self.render("x", 0)
        prompt_ids = tokenizer(prompt)["input_ids"]
        answers, report = [], LabelWordReport()
        for label, word in zip(self.labels, self.words):
            full = self.render("x", 0, answer=word)
            full_ids = tokenizer(full)["input_ids"]
            if not full.startswith(prompt) or full_ids[:len(prompt_ids)] != prompt_ids:
                raise InputError(f"model.vlm.label_words.{label}: the answer {word!r} does not follow the prompt "
                                 "as tokens (the chat template or a merge across the boundary changes the "
                                 "prompt's end); try other words or model.vlm.chat_template")
            ids = _strip_trailing_blanks(tokenizer, full_ids[len(prompt_ids):])
            if not ids:
                raise InputError(f"model.vlm.label_words.{label}: {word!r} gives no answer tokens")
            if _has_unknown_pieces(tokenizer, ids, word):
                raise InputError(f"model.vlm.label_words.{label}: {word!r} has pieces the tokenizer does not know "
                                 "(they become unk or are dropped); choose words in its vocabulary")
            pieces = tokenizer.convert_ids_to_tokens(ids)
            report.pieces[label] = pieces
            report.texts[label] = piece_texts(tokenizer, ids)
            if any(piece.startswith("<0x") and piece.endswith(">") for piece in pieces):
                report.byte_fallback.append(label)
            answers.append(ids)
        for i, first in enumerate(answers):
            report.shared_first += [(self.labels[i], self.labels[j]) for j in range(i + 1, len(answers))
                                    if answers[j][0] == first[0]]
        self._log_report(report)
        return answers, report

    def _log_report(self, report: LabelWordReport) -> None:
        for label in self.labels:
            log.info(f"label {label!r}: answer in {len(report.pieces[label])} tokens {report.texts[label]}")
        if report.byte_fallback:
            log.warning(f"labels {report.byte_fallback} are partly spelled in byte pieces (<0xNN>): the model "
                        "reads them as raw UTF-8 bytes; words in its vocabulary usually learn faster "
                        "(model.vlm.label_words)")
        if report.shared_first:
            log.warning(f"labels sharing their first answer token: {report.shared_first}; "
                        "first_token scoring cannot tell them apart")
        if report.shared_first and self.cfg.model.vlm.scoring == "first_token":
            a, b = report.shared_first[0]
            raise InputError(f"model.vlm.scoring: first_token needs labels whose answers start with different "
                             f"tokens, but {a!r} and {b!r} share one; use mean or change model.vlm.label_words")

    # ---------------------------------------------------------------------------------- examples

    def prepare(self, posts: Sequence[Post]) -> list[Example]:
        examples, trimmed = [], 0
        max_images = self.cfg.model.vlm.max_images
        for post in posts:
            trimmed += len(post.images) > max_images
            examples.append(self.examples(post))
        if trimmed and self.loaded.has_vision:
            log.warning(f"{trimmed} of {len(posts)} posts have more than model.vlm.max_images={max_images} "
                        "images: only their first images are shown to the model")
        return examples

    def encode(self, examples: Sequence[Example], train: bool) -> dict[str, torch.Tensor]:
        """The prompts of a batch, left-padded, with their images (the processor's tensors, as it names them)."""
        rng = self.images.batch_rng(train)
        max_images = self.cfg.model.vlm.max_images
        per_post = [self.images.load_all(e.post.images[:max_images], rng, self.flip_images) if self.loaded.has_vision
                    else [] for e in examples]
        texts = [self.render(e.text, len(images)) for e, images in zip(examples, per_post)]
        if not any(per_post):
            return dict(self.loaded.tokenizer(texts, padding=True, return_tensors="pt"))
        images: Any = per_post if self.nested_images else [image for images in per_post for image in images]
        return dict(self.loaded.processor(text=texts, images=images, padding=True, return_tensors="pt",
                                          **self.image_kwargs))


def piece_texts(tokenizer: Any, ids: list[int]) -> list[str]:
    """Each answer token's text, decoded: a byte-level piece reads 'há»' for the bytes of 'hữ'. A token that ends
    inside a character (its decode ends in U+FFFD) is shown joined to the tokens that complete the character."""
    texts: list[str] = []
    group: list[int] = []
    for position, token in enumerate(ids):
        group.append(token)
        text = tokenizer.decode(group, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if text.endswith("\ufffd") and position + 1 < len(ids):
            continue
        texts.append(text)
        group = []
    return texts


def _has_unknown_pieces(tokenizer: Any, ids: list[int], word: str) -> bool:
    # An unk id, or characters a tokenizer without unk token silently drops: the answer does not decode back.
    if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids:
        return True
    decoded = tokenizer.decode(ids, skip_special_tokens=True)
    return "".join(word.split()) not in "".join(decoded.split())


def _strip_trailing_blanks(tokenizer: Any, ids: list[int]) -> list[int]:
    # What a template writes after the end-of-turn token ("\n") is not part of the answer.
    while ids and not tokenizer.decode(ids[-1:]).strip():
        ids = ids[:-1]
    return ids


def image_budget_kwargs(loaded: LoadedVlm, vlm: Any) -> dict[str, Any]:
    """Processor arguments that bound each image's token cost, as the model's family takes them."""
    if vlm.max_tiles < 1:
        raise InputError(f"model.vlm.max_tiles: must be at least 1, got {vlm.max_tiles}")
    return loaded.family.image_budget(loaded.processor, vlm)
