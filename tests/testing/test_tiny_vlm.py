"""Tiny causal LMs and VLMs: each reloads through the Auto classes (processors without torchvision) and runs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer

from mmtune.models.vlm_families import families, family_names, get_family, load_processor
from mmtune.testing.tiny import tiny_families

TEXT_ONLY = tuple(family.name for family in families() if not family.has_vision)
VISION = tuple(family.name for family in families() if family.has_vision)
CAPTION = "Trời đẹp quá 😂 #xuhuong"


def messages(n_images: int, text: str = CAPTION) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image"}] * n_images + [{"type": "text", "text": text}]}]


def test_vlm_families_are_make_tiny_families() -> None:
    assert set(family_names()) <= set(tiny_families())


@pytest.mark.parametrize("family", TEXT_ONLY)
def test_causal_lm_reloads_and_trains(family: str, tiny_vlm: Callable[[str], Path]) -> None:
    folder = tiny_vlm(family)
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    text = tokenizer.apply_chat_template([{"role": "user", "content": CAPTION}], tokenize=False,
                                         add_generation_prompt=True)
    inputs = tokenizer(text, return_tensors="pt")
    out = model(**inputs, labels=inputs["input_ids"])
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert out.logits.shape[-1] == model.config.vocab_size >= len(tokenizer)


@pytest.mark.parametrize("family", VISION)
def test_vlm_reloads_and_runs_on_posts_with_several_images(family: str, tiny_vlm: Callable[[str], Path]) -> None:
    folder = tiny_vlm(family)
    model = AutoModelForImageTextToText.from_pretrained(folder)
    processor = load_processor(str(folder))
    render = processor.tokenizer.apply_chat_template
    texts = [render(messages(n), chat_template=processor.chat_template, tokenize=False, add_generation_prompt=True)
             for n in (2, 1)]
    images = [[Image.new("RGB", (40, 30), (200, 10, 10)), Image.new("RGB", (20, 60), (0, 90, 10))],
              [Image.new("RGB", (64, 64), (5, 5, 250))]]
    processor.tokenizer.padding_side = "left"
    inputs = processor(text=texts, images=images, padding=True, return_tensors="pt")
    out = model(**inputs, labels=inputs["input_ids"])
    out.loss.backward()
    assert torch.isfinite(out.loss)
    # The image features were placed: the vision tower got gradients.
    vision_grads = [p.grad for n, p in model.named_parameters()
                    if ("vision" in n or "visual" in n) and p.grad is not None]
    assert vision_grads and any(g.abs().sum() > 0 for g in vision_grads)


@pytest.mark.parametrize("family", ["llama", "llava", "smolvlm"])
def test_byte_fallback_tokenizers_spell_unseen_characters_in_bytes(family: str, tiny_vlm: Callable[[str], Path]):
    tokenizer = AutoTokenizer.from_pretrained(tiny_vlm(family))
    pieces = tokenizer.convert_ids_to_tokens(tokenizer("mèo 😂", add_special_tokens=False)["input_ids"])
    assert "<0xF0>" in pieces  # the emoji's first UTF-8 byte
    assert tokenizer.unk_token_id not in tokenizer("mèo", add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("family", family_names())
def test_chat_and_image_tokens_are_single_tokens(family: str, tiny_vlm: Callable[[str], Path]) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_vlm(family))
    user = messages(1) if family not in TEXT_ONLY else [{"role": "user", "content": CAPTION}]
    text = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": "không"}], tokenize=False)
    specials = [t for t in tokenizer.all_special_tokens if t in text and t != tokenizer.unk_token]
    assert specials, text
    for token in specials:
        assert len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1, token


def test_processor_reload_keeps_the_image_token_count(tiny_vlm: Callable[[str], Path]) -> None:
    for family, attribute in (("internvl", "image_seq_length"), ("smolvlm", "image_seq_len"),
                              ("idefics3", "image_seq_len")):
        processor = load_processor(str(tiny_vlm(family)))
        assert getattr(processor, attribute) == 4, family


@pytest.mark.parametrize("family", VISION)
def test_saved_processor_names_the_familys_real_class(family: str, tiny_vlm: Callable[[str], Path]) -> None:
    # Even where a torchvision-free subclass built it: the checkpoint loads like a Hub one anywhere.
    saved = json.loads((tiny_vlm(family) / "processor_config.json").read_text(encoding="utf-8"))
    assert saved["processor_class"] == get_family(family).processor_class
