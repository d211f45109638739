"""sft / dpo / build-vlm bound each image's tokens by model.vlm.max_tiles / max_pixels, as the classifier kinds do:
TRL's collators call the processor with its own defaults, so the bounds become the image processor's settings."""

import pytest
from PIL import Image

from mmtune.generative.sft import read_chat_splits, sft_trainer
from mmtune.generative.trainer_setup import load_vlm
from mmtune.testing.tiny import make_tiny
from tests.generative.conftest import run_config, write_jsonl


@pytest.fixture
def wide_image_chat(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (200, 120), (200, 20, 20)).save(images / "wide.png")
    rows = [{"images": ["wide.png"], "messages": [{"role": "user", "content": "Màu gì?"},
                                                  {"role": "assistant", "content": "màu đỏ"}]}] * 2
    return write_jsonl(tmp_path / "chat.jsonl", rows), images


def collated(folder, chat, tmp_path, *overrides):
    cfg = run_config(folder, chat[0], chat[1], tmp_path / "run", "model.vlm.image_size=200", *overrides)
    model, processor = load_vlm(cfg)
    trainer = sft_trainer(cfg, model, processor, read_chat_splits(cfg), tmp_path / "run")
    batch = trainer.data_collator([trainer.train_dataset[0]])
    return batch, int((batch["input_ids"] == model.config.image_token_id).sum())


@pytest.mark.parametrize("family", ["smolvlm", "internvl"])
def test_max_tiles_decides_whether_images_are_cut_into_tiles(family, wide_image_chat, tmp_path):
    folder = make_tiny(family, tmp_path / family)
    one, one_tokens = collated(folder, wide_image_chat, tmp_path, "model.vlm.max_tiles=1")
    many, many_tokens = collated(folder, wide_image_chat, tmp_path, "model.vlm.max_tiles=4")
    tiles = {"smolvlm": lambda b: b["pixel_values"].shape[1], "internvl": lambda b: b["pixel_values"].shape[0]}[family]
    assert tiles(one) == 1 and tiles(many) > 1
    assert many_tokens == tiles(many) * one_tokens


def test_max_pixels_sets_qwen2_vl_image_tokens(wide_image_chat, tmp_path):
    folder = make_tiny("qwen2-vl", tmp_path / "qwen2-vl")
    _, small = collated(folder, wide_image_chat, tmp_path, "model.vlm.max_pixels=1024")
    _, large = collated(folder, wide_image_chat, tmp_path, "model.vlm.max_pixels=20000")
    # One token per 2x2 merge of 4-px patches: at most max_pixels / 64 tokens.
    assert small <= 1024 // 64 < large <= 20000 // 64
