"""Tiny random models: each family saves and loads back through the Auto classes, offline, and runs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import (
    AutoImageProcessor,
    AutoModel,
    AutoProcessor,
    AutoTokenizer,
    ViltForImagesAndTextClassification,
)

from mmtune.errors import InputError
from mmtune.testing.corpus import HIDDEN
from mmtune.testing.tiny import ENCODER_FAMILIES, TEXT_MAX_LENGTH, VILT_MAX_LENGTH, make_tiny, tiny_families

CAPTION = "Trời đẹp quá 😂 #xuhuong"
# Not in the tokenizers' training corpus: the letters must still map to known pieces.
UNSEEN = "Sáng nay kẹt xe quá trời, trễ học luôn rồi. Ừ thì ngủ tiếp vậy!"
TEXT_FAMILIES = ("vilt", "clip", "siglip", "bert", "xlm-roberta")
IMAGE_FAMILIES = ("vilt", "clip", "siglip", "vit", "convnext")


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads the variable once, at import, which happened before this fixture ran.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Build each family once per module (seed 0) and hand out its folder."""
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = make_tiny(family, tmp_path_factory.mktemp(family.replace("-", "_")))
        return built[family]

    return get


def image(size: tuple[int, int] = (80, 50), color: tuple[int, int, int] = (200, 30, 30)) -> Image.Image:
    return Image.new("RGB", size, color)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


@pytest.mark.parametrize("family", ENCODER_FAMILIES)
def test_reloads_with_auto_classes_and_runs(family: str, tiny: Callable[[str], Path]) -> None:
    folder = tiny(family)
    model = AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        if family in ("bert", "xlm-roberta"):
            tokenizer = AutoTokenizer.from_pretrained(folder)
            out = model(**tokenizer([CAPTION, "ok"], padding=True, return_tensors="pt"))
            assert out.last_hidden_state.shape[::2] == (2, HIDDEN)
            assert out.pooler_output.shape == (2, HIDDEN)
        elif family in ("vit", "convnext"):
            pixels = AutoImageProcessor.from_pretrained(folder)(image(), return_tensors="pt")["pixel_values"]
            assert pixels.shape == (1, 3, 32, 32)
            out = model(pixel_values=pixels)
            assert out.pooler_output.shape == (1, HIDDEN)
        elif family == "vilt":
            processor = AutoProcessor.from_pretrained(folder)
            inputs = processor(images=[image()], text=[CAPTION], return_tensors="pt")
            # 80x50 -> shortest edge 64, long edge 102.4 cut to a multiple of the patch size: 64x96, 4x6 patches.
            assert inputs["pixel_values"].shape == (1, 3, 64, 96)
            text_length = inputs["input_ids"].shape[1]
            out = model(**inputs)
            assert out.last_hidden_state.shape == (1, text_length + 1 + 24, HIDDEN)
        else:
            processor = AutoProcessor.from_pretrained(folder)
            # SigLIP pools its text on the last position, so it is meant to be padded to max_length.
            padding = "max_length" if family == "siglip" else True
            inputs = processor(text=[CAPTION, "ok"], images=[image(), image((30, 60))], padding=padding,
                               return_tensors="pt")
            out = model(**inputs)
            assert out.logits_per_image.shape == (2, 2)


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_feature_getters_return_output_objects(family: str, tiny: Callable[[str], Path]) -> None:
    folder = tiny(family)
    model = AutoModel.from_pretrained(folder).eval()
    processor = AutoProcessor.from_pretrained(folder)
    inputs = processor(text=[CAPTION], images=[image()], padding="max_length", return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs)
        # transformers 5: the getters return BaseModelOutputWithPooling; the projected features are .pooler_output.
        text = model.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        pictures = model.get_image_features(pixel_values=inputs["pixel_values"])
    assert text.pooler_output.shape == pictures.pooler_output.shape == (1, HIDDEN)
    torch.testing.assert_close(torch.nn.functional.normalize(text.pooler_output, dim=-1), out.text_embeds)
    torch.testing.assert_close(torch.nn.functional.normalize(pictures.pooler_output, dim=-1), out.image_embeds)


@pytest.mark.parametrize("family", TEXT_FAMILIES)
def test_tokenizer_knows_vietnamese_and_matches_the_model(family: str, tiny: Callable[[str], Path]) -> None:
    folder = tiny(family)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = AutoModel.from_pretrained(folder).config.get_text_config()
    assert config.vocab_size == len(tokenizer) == max(tokenizer.get_vocab().values()) + 1
    for text in (CAPTION, UNSEEN):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        unknown = sum(i == tokenizer.unk_token_id for i in ids)
        assert unknown <= 1, tokenizer.convert_ids_to_tokens(ids)  # at most the emoji
    with_specials = tokenizer("Trời đẹp quá")["input_ids"]
    assert len(with_specials) > len(tokenizer("Trời đẹp quá", add_special_tokens=False)["input_ids"])
    decoded = tokenizer.decode(with_specials, skip_special_tokens=True)
    # The reload rebuilds BERT's normalizer from tokenizer_config.json: tones must survive it (strip_accents=False).
    assert decoded in ("Trời đẹp quá", "trời đẹp quá")
    expected_max = VILT_MAX_LENGTH if family == "vilt" else TEXT_MAX_LENGTH
    assert tokenizer.model_max_length == expected_max
    assert len(tokenizer(" ".join([UNSEEN] * 20), truncation=True)["input_ids"]) == expected_max


@pytest.mark.parametrize("family", tiny_families())
def test_seed_decides_the_weights(family: str, tiny: Callable[[str], Path], tmp_path: Path) -> None:
    same = weights(make_tiny(family, tmp_path / "same", seed=0))
    other = weights(make_tiny(family, tmp_path / "other", seed=1))
    reference = weights(tiny(family))
    assert same.keys() == reference.keys() == other.keys()
    assert all(torch.equal(same[k], reference[k]) for k in reference)
    assert not all(torch.equal(other[k], reference[k]) for k in reference)
    if family in TEXT_FAMILIES:
        assert (tmp_path / "other" / "tokenizer.json").read_bytes() == (tiny(family) / "tokenizer.json").read_bytes()


def test_vilt_two_posts_with_two_images_each(tiny: Callable[[str], Path]) -> None:
    folder = tiny("vilt")
    processor = AutoProcessor.from_pretrained(folder)
    posts = [(CAPTION, [image((80, 50)), image((40, 90), (30, 30, 200))]),
             ("hai ảnh luôn", [image((60, 60), (10, 200, 10)), image((50, 80))])]
    text = processor.tokenizer([caption for caption, _ in posts], padding=True, return_tensors="pt")
    # The image processor flattens the nested list and pads every image to the largest: [4, C, H, W], [4, H, W].
    pictures = processor.image_processor([images for _, images in posts], return_tensors="pt")
    pixel_values = pictures["pixel_values"].unflatten(0, (2, 2))  # [B, n_images, C, H, W]
    pixel_mask = pictures["pixel_mask"].unflatten(0, (2, 2))  # [B, n_images, H, W]
    assert pixel_values.shape[:3] == (2, 2, 3) and pixel_mask.shape[:2] == (2, 2)

    # ViltModel takes one image per text: [B, C, H, W] with [B, H, W]. Several images go in one call each, as
    # ViltForImagesAndTextClassification does. It tags image i with modality type i + 1, which needs
    # modality_type_vocab_size >= n_images + 1; the tiny model has 2 (text, one image), like dandelin/vilt-b32-mlm,
    # so with ViltModel every image keeps type 1 (image_token_type_idx=2 would be an IndexError).
    model = AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        pooled = [model(**text, pixel_values=pixel_values[:, i], pixel_mask=pixel_mask[:, i]).pooler_output
                  for i in range(2)]
        alone = model(**processor(images=[posts[0][1][0]], text=[CAPTION], return_tensors="pt")).pooler_output
    assert torch.cat(pooled, dim=-1).shape == (2, 2 * HIDDEN)
    # Padding patches are masked out: an image padded to a bigger one in the batch gives the same features.
    torch.testing.assert_close(pooled[0][0], alone[0], atol=1e-5, rtol=1e-5)

    # The NLVR2-style head: from the 1-image checkpoint its 3-row modality table is new (ignore_mismatched_sizes).
    # It adds the n_images dim to 4-D pixel_values but never to pixel_mask, so pass both with that dim.
    classifier = ViltForImagesAndTextClassification.from_pretrained(
        folder, num_images=2, modality_type_vocab_size=3, num_labels=4, ignore_mismatched_sizes=True,
    ).eval()
    with torch.no_grad():
        logits = classifier(**text, pixel_values=pixel_values, pixel_mask=pixel_mask).logits
    assert logits.shape == (2, 4)


def test_image_processors_load_without_torchvision(tiny: Callable[[str], Path]) -> None:
    for family in IMAGE_FAMILIES:
        folder = tiny(family)
        # Saved under the Hub name ("ViltImageProcessor"): the loader picks the torchvision backend where it is
        # installed and the PIL one ("ViltImageProcessorPil") where it is not.
        saved = json.loads((folder / "preprocessor_config.json").read_text())["image_processor_type"]
        assert not saved.endswith("Pil")
        assert type(AutoImageProcessor.from_pretrained(folder)).__name__ in (saved, saved + "Pil")


def test_make_tiny_leaves_the_callers_random_state_alone(tmp_path: Path) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    make_tiny("vit", tmp_path, seed=7)
    assert torch.equal(torch.rand(3), expected)


def test_unknown_family_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="make-tiny: unknown family 'gpt9' \\(known: vilt, clip, siglip"):
        make_tiny("gpt9", tmp_path)
