"""Prompts, label words and image budgets of the VLM kinds; bad label words or templates exit 2 naming the key."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from mmtune.errors import InputError
from mmtune.models.vlm_prompts import BUILT_IN, resolve_label_words, resolve_template
from tests.models.conftest import SARCASM, build
from tests.training.conftest import run_mmtune, write_config


def test_every_built_in_template_has_the_post_and_the_labels():
    assert {"vi", "en", "vi_reasoning", "en_reasoning"} <= set(BUILT_IN)
    for name in BUILT_IN:
        assert resolve_template(name) == BUILT_IN[name]
    assert "{text}" in resolve_template("Bài: {text}. Nhãn?")


@pytest.mark.parametrize(("prompt", "message"), [
    ("Caption: {caption}", "unknown placeholder {caption}"),
    ("Classify this post.", "no {text} placeholder"),
    ("Caption: {text", "not a valid template"),
])
def test_bad_templates_are_input_errors_naming_the_key(prompt, message):
    with pytest.raises(InputError, match="model.vlm.prompt") as error:
        resolve_template(prompt)
    assert message in str(error.value)


@pytest.mark.parametrize(("words", "message"), [
    ({"bogus": "x"}, "label_words.bogus: not a label"),
    ({"image-sarcasm": "ảnh"}, "label_words.multi-sarcasm: no words given"),
    ({"image-sarcasm": "a", "multi-sarcasm": "b", "not-sarcasm": " ", "text-sarcasm": "d"}, "not-sarcasm: empty"),
    ({"image-sarcasm": "a", "multi-sarcasm": "a", "not-sarcasm": "c", "text-sarcasm": "d"}, "multi-sarcasm: the same"),
])
def test_bad_label_words_are_input_errors_naming_the_label(words, message):
    with pytest.raises(InputError, match=message):
        resolve_label_words(SARCASM, words)


def test_prompt_renders_images_then_text_with_the_chat_template(vlm_setup):
    classifier = build(vlm_setup("qwen2-vl", "vlm-generative", "model.vlm.prompt=en",
                                 "model.vlm.system_prompt=Be brief."))
    text = classifier.inputs.render("Trời đẹp quá", 2)
    assert text.count("<|image_pad|>") == 2 and text.index("<|image_pad|>") < text.index("Trời đẹp quá")
    assert text.startswith("<|im_start|>system\nBe brief.") and text.endswith("<|im_start|>assistant\n")
    assert "image-sarcasm, multi-sarcasm, not-sarcasm, text-sarcasm" in text


def test_answers_end_with_the_end_of_turn_token(vlm_setup):
    classifier = build(vlm_setup("qwen2", "vlm-generative"))
    tokenizer = classifier.inputs.loaded.tokenizer
    for label, ids in zip(SARCASM, classifier.inputs.answers):
        assert tokenizer.decode(ids) == label + "<|im_end|>"


def test_byte_pieces_and_shared_first_tokens_are_reported(vlm_setup, caplog):
    words = "model.vlm.label_words={image-sarcasm: mỉa mai ảnh 📷, multi-sarcasm: mỉa mai cả hai, " \
            "not-sarcasm: không, text-sarcasm: mỉa mai chữ}"
    with caplog.at_level("WARNING"):
        classifier = build(vlm_setup("llama", "vlm-generative", words))
    report = classifier.inputs.report
    assert report.byte_fallback == ["image-sarcasm"]
    assert ("image-sarcasm", "multi-sarcasm") in report.shared_first
    assert "byte pieces" in caplog.text and "sharing their first answer token" in caplog.text
    with pytest.raises(InputError, match="model.vlm.scoring: first_token"):
        build(vlm_setup("llama", "vlm-generative", words, "model.vlm.scoring=first_token"))


def test_label_words_with_unknown_pieces_are_input_errors(vlm_setup, tiny_vlm, tmp_path):
    # A vocabulary without the byte pieces of 4-byte UTF-8 characters: LLaMA's tokenizer drops the emoji.
    folder = shutil.copytree(tiny_vlm("llama"), tmp_path / "llama")
    tokenizer = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    for piece in ("<0xF0>", "<0x9F>"):
        tokenizer["model"]["vocab"].pop(piece)
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer), encoding="utf-8")
    setup = vlm_setup("llama", "vlm-generative", f"model.name={folder}",
                      "model.vlm.label_words={image-sarcasm: 📷, multi-sarcasm: b, not-sarcasm: c, text-sarcasm: d}")
    with pytest.raises(InputError, match="model.vlm.label_words.image-sarcasm: .* does not know"):
        build(setup)


def test_internvl_tiles_follow_max_tiles(vlm_setup):
    setup = vlm_setup("internvl", "vlm-generative")
    one = build(setup)
    examples = one.prepare(setup.posts[:1], train=False)
    assert one.collate(examples, train=False)["pixel_values"].shape[0] == 1
    tiled = build(vlm_setup("internvl", "vlm-generative", "model.vlm.max_tiles=4", "model.vlm.image_size=64"))
    pixels = tiled.collate(examples, train=False)["pixel_values"]
    assert 2 < pixels.shape[0] <= 5  # up to 4 tiles plus the thumbnail
    with torch.no_grad():
        assert tiled.eval()(tiled.collate(examples, train=False)).shape == (1, 4)


def test_qwen2_vl_max_pixels_bounds_the_image_tokens(vlm_setup):
    small = build(vlm_setup("qwen2-vl", "vlm-generative", "model.vlm.max_pixels=256", "model.vlm.image_size=64"))
    large = build(vlm_setup("qwen2-vl", "vlm-generative", "model.vlm.max_pixels=4096", "model.vlm.image_size=64"))
    setup = vlm_setup("qwen2-vl")
    examples = small.prepare(setup.posts[:1], train=False)
    grid_small = small.collate(examples, train=False)["image_grid_thw"].prod(-1)
    grid_large = large.collate(examples, train=False)["image_grid_thw"].prod(-1)
    assert (grid_small <= 256 // 16).all() and (grid_large > grid_small).all()


def test_a_bad_template_exits_2(tiny_vlm, vlm_demo, tmp_path):
    config = {"output_dir": str(tmp_path / "run"),
              "data": {"train": str(vlm_demo.train), "train_images": str(vlm_demo.train_images)},
              "model": {"kind": "vlm-generative", "name": str(tiny_vlm("qwen2")),
                        "vlm": {"prompt": "Caption: {caption}"}}, "train": {"epochs": 1}}
    result = run_mmtune("train", write_config(config, tmp_path / "c.yaml"))
    assert result.returncode == 2, result.stderr
    assert "model.vlm.prompt: unknown placeholder {caption}" in result.stderr and "Traceback" not in result.stderr


def test_label_words_are_logged_as_text_not_as_byte_level_pieces(vlm_setup, caplog):
    words = "model.vlm.label_words={image-sarcasm: ảnh, multi-sarcasm: cả hai, not-sarcasm: không, text-sarcasm: chữ}"
    with caplog.at_level("INFO", logger="mmtune.models.vlm_inputs"):
        classifier = build(vlm_setup("qwen2", "vlm-generative", words))
    report = classifier.inputs.report
    pieces, texts = report.pieces["text-sarcasm"], report.texts["text-sarcasm"]
    assert "".join(texts) == "chữ<|im_end|>" and "\ufffd" not in "".join(texts)
    assert texts[-1] == "<|im_end|>" and len(texts) <= len(pieces)
    assert "ữ" not in "".join(pieces)  # the tokenizer's byte-level pieces: what the log showed before
    line = next(message for message in caplog.messages if message.startswith("label 'text-sarcasm'"))
    assert line == f"label 'text-sarcasm': answer in {len(pieces)} tokens {texts}"
    assert "Ã" not in caplog.text and "»" not in caplog.text  # no byte-level spelling (ữ is 'á»¯' there)
