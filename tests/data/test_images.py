"""Images: probing, safe loading, resize policies, augmentation. Every image is made here with PIL."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from mmtune.config import AugmentConfig, ImageConfig
from mmtune.data.images import (
    Augmenter,
    AugmentParams,
    ImageError,
    ImageProbe,
    load_image,
    prepare_image,
    probe_image,
    resize_image,
)
from mmtune.errors import InputError

LIMIT = 64_000_000
RED, GREEN, BLUE, WHITE, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)
NEUTRAL = AugmentConfig(enabled=True, hflip=0.0, rotation=0.0, scale=(1.0, 1.0), crop=1.0, translate=0.0)


def photo(seed: int, size: tuple[int, int] = (256, 192)) -> Image.Image:
    """Smooth random content: a stand-in for a photo with a stable perceptual hash."""
    coarse = np.random.default_rng(seed).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)


def save(img: Image.Image, path: Path, fmt: str | None = None, **params: object) -> Path:
    img.save(path, format=fmt, **params)
    return path


def halves(size: tuple[int, int], left: tuple[int, int, int], right: tuple[int, int, int]) -> Image.Image:
    img = Image.new("RGB", size, left)
    img.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return img


def close(pixel: tuple[int, ...], expected: tuple[int, ...], tol: int = 12) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(pixel, expected, strict=True))


def truncated_jpeg(path: Path) -> Path:
    buffer = io.BytesIO()
    photo(1, (256, 256)).save(buffer, format="JPEG", quality=95)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


# -------------------------------------------------------------------------------------------- probing


@pytest.mark.parametrize(("name", "fmt", "mode"), [("a.jpg", "JPEG", "RGB"), ("a.png", "PNG", "RGB"),
                                                   ("a.gif", "GIF", "P")])
def test_probe_reads_format_size_and_mode(tmp_path: Path, name: str, fmt: str, mode: str) -> None:
    path = save(photo(0, (120, 80)), tmp_path / name)
    probe = probe_image(path, LIMIT)
    assert (probe.width, probe.height, probe.format, probe.name_format) == (120, 80, fmt, fmt)
    assert (probe.mode, probe.n_frames, probe.format_mismatch) == (mode, 1, False)
    assert probe.aspect == pytest.approx(1.5)
    assert probe.sha256 is None and probe.phash is None


def test_png_named_jpg_is_a_format_mismatch_but_loads(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (30, 20), GREEN), tmp_path / "meme.jpg", "PNG")
    probe = probe_image(path, LIMIT)
    assert (probe.format, probe.name_format, probe.format_mismatch) == ("PNG", "JPEG", True)
    img = load_image(path, LIMIT)
    assert (img.mode, img.size, img.getpixel((5, 5))) == ("RGB", (30, 20), GREEN)


def test_unknown_extension_has_no_name_format(tmp_path: Path) -> None:
    probe = probe_image(save(photo(0), tmp_path / "a.dat", "PNG"), LIMIT)
    assert probe.name_format is None and not probe.format_mismatch


def test_truncated_jpeg_is_an_image_error(tmp_path: Path) -> None:
    path = truncated_jpeg(tmp_path / "cut.jpg")
    for read in (lambda: probe_image(path, LIMIT), lambda: probe_image(path, LIMIT, hashes=True),
                 lambda: load_image(path, LIMIT), lambda: load_image(path, LIMIT, min_size=16)):
        with pytest.raises(ImageError, match="truncated or corrupt JPEG data"):
            read()
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncated_png_is_an_image_error(tmp_path: Path) -> None:
    data = save(photo(2, (200, 200)), tmp_path / "a.png").read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="PNG"):
        probe_image(path, LIMIT)
    with pytest.raises(ImageError, match="PNG"):
        load_image(path, LIMIT)


def test_random_bytes_and_empty_files_are_not_images(tmp_path: Path) -> None:
    noise = tmp_path / "noise.jpg"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for path, reason in ((noise, "not an image file"), (empty, "empty file")):
        for read in (probe_image, load_image):
            with pytest.raises(ImageError) as info:
                read(path, LIMIT)
            assert str(info.value) == reason


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    for read in (probe_image, load_image):
        with pytest.raises(FileNotFoundError):
            read(tmp_path / "nope.jpg", LIMIT)


def test_bomb_limit_refuses_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save(Image.new("RGB", (64, 48), RED), tmp_path / "big.jpg")

    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    for read in (probe_image, load_image):
        with pytest.raises(ImageError) as info:
            read(path, 1000)
        assert str(info.value) == "decompression bomb: 64x48 > 1000 pixels"
    # The header check also wins over decoding errors: a truncated file says "bomb", not "truncated".
    with pytest.raises(ImageError, match="decompression bomb"):
        probe_image(truncated_jpeg(tmp_path / "cut.jpg"), 1000)


def test_pil_bomb_warning_and_error_become_our_reasons(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = save(Image.new("RGB", (64, 48), RED), tmp_path / "a.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # 3072 pixels: PIL warns (> 2000), no error
    assert probe_image(path, LIMIT).width == 64
    assert load_image(path, LIMIT).size == (64, 48)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # over 2x: PIL refuses before we see the size
    with pytest.raises(ImageError, match=r"^decompression bomb: 3072 > Pillow's limit of 2000 pixels$"):
        probe_image(path, LIMIT)


def test_hashes_sha256_and_phash(tmp_path: Path) -> None:
    original = save(photo(3), tmp_path / "a.png")
    copy = save(photo(3).resize((240, 180), Image.Resampling.BILINEAR), tmp_path / "b.jpg", quality=80)
    other = save(photo(4), tmp_path / "c.png")
    first, second, third = (probe_image(p, LIMIT, hashes=True) for p in (original, copy, other))
    assert first.sha256 == hashlib.sha256(original.read_bytes()).hexdigest()
    assert first.phash is not None and second.phash is not None and third.phash is not None
    assert 0 <= first.phash < 2**64
    assert bin(first.phash ^ second.phash).count("1") <= 4
    assert bin(first.phash ^ third.phash).count("1") > 10


def test_phash_follows_exif_orientation(tmp_path: Path) -> None:
    upright = photo(5, (160, 120))
    rotated = upright.transpose(Image.Transpose.ROTATE_90)  # stored turned; the tag turns it back
    exif = Image.Exif()
    exif[0x0112] = 6
    a = probe_image(save(upright, tmp_path / "a.jpg", quality=95), LIMIT, hashes=True)
    b = probe_image(save(rotated, tmp_path / "b.jpg", exif=exif, quality=95), LIMIT, hashes=True)
    assert (b.width, b.height) == (160, 120)
    assert a.phash is not None and b.phash is not None
    assert bin(a.phash ^ b.phash).count("1") <= 4


# -------------------------------------------------------------------------------------------- loading


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = save(halves((40, 20), RED, BLUE), tmp_path / "o.jpg", exif=exif, quality=95)
    img = load_image(path, LIMIT)
    assert img.size == (20, 40)
    assert close(img.getpixel((10, 5)), RED) and close(img.getpixel((10, 35)), BLUE)
    probe = probe_image(path, LIMIT)
    assert (probe.width, probe.height) == (20, 40)


def _palette_with_transparency(path: Path) -> Path:
    img = Image.new("P", (10, 10), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0, 0, 0] * 254)
    img.paste(1, (5, 0, 10, 10))
    return save(img, path, transparency=0)


def _rgba(path: Path) -> Path:
    img = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    img.paste((255, 0, 0, 255), (5, 0, 10, 10))
    return save(img, path)


def _la(path: Path) -> Path:
    img = Image.new("LA", (10, 10), (0, 0))
    img.paste((0, 255), (5, 0, 10, 10))
    return save(img, path)


def _cmyk(path: Path) -> Path:
    img = Image.new("CMYK", (10, 10), (0, 0, 0, 0))
    img.paste((0, 255, 255, 0), (5, 0, 10, 10))
    return save(img, path, "JPEG", quality=95)


def _grey(path: Path) -> Path:
    img = Image.new("L", (10, 10), 255)
    img.paste(100, (5, 0, 10, 10))
    return save(img, path)


def _bilevel(path: Path) -> Path:
    img = Image.new("1", (10, 10), 1)
    img.paste(0, (5, 0, 10, 10))
    return save(img, path)


def _sixteen_bit(path: Path) -> Path:
    values = np.full((10, 10), 65535, dtype=np.uint16)
    values[:, 5:] = 32896  # 128 * 257
    return save(Image.fromarray(values), path)


def _int32(path: Path) -> Path:
    values = np.full((10, 10), 65535, dtype=np.int32)
    values[:, 5:] = 0
    return save(Image.fromarray(values), path, "TIFF")


def _float(path: Path) -> Path:
    values = np.ones((10, 10), dtype=np.float32)
    values[:, 5:] = 0.5
    return save(Image.fromarray(values), path, "TIFF")


@pytest.mark.parametrize(("make", "name", "mode", "left", "right"), [
    (_palette_with_transparency, "p.png", "P", WHITE, RED),
    (_rgba, "rgba.png", "RGBA", WHITE, RED),
    (_la, "la.png", "LA", WHITE, BLACK),
    (_cmyk, "cmyk.jpg", "CMYK", WHITE, RED),
    (_grey, "l.png", "L", WHITE, (100, 100, 100)),
    (_bilevel, "1.png", "1", WHITE, BLACK),
    (_sixteen_bit, "i16.png", "I;16", WHITE, (128, 128, 128)),
    (_int32, "i.tif", "I", WHITE, BLACK),
    (_float, "f.tif", "F", WHITE, (128, 128, 128)),
])
def test_every_mode_loads_as_rgb(tmp_path: Path, make: Callable[[Path], Path], name: str, mode: str,
                                 left: tuple, right: tuple) -> None:
    path = make(tmp_path / name)
    probe = probe_image(path, LIMIT, hashes=True)
    assert probe.mode.startswith(mode[:3]) and probe.phash is not None
    img = load_image(path, LIMIT)
    assert (img.mode, img.size) == ("RGB", (10, 10))
    assert close(img.getpixel((1, 5)), left), img.getpixel((1, 5))
    assert close(img.getpixel((8, 5)), right), img.getpixel((8, 5))


@pytest.mark.parametrize(("name", "params"), [("anim.gif", {}), ("anim.webp", {"lossless": True})])
def test_animation_gives_first_frame(tmp_path: Path, name: str, params: dict) -> None:
    frames = [Image.new("RGB", (20, 20), color) for color in (RED, GREEN, BLUE)]
    path = tmp_path / name
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0, **params)
    probe = probe_image(path, LIMIT, hashes=True)
    assert probe.n_frames == 3
    img = load_image(path, LIMIT)
    assert img.mode == "RGB" and close(img.getpixel((10, 10)), RED)


def test_reduced_jpeg_decoding_keeps_min_size(tmp_path: Path) -> None:
    path = save(photo(6, (1600, 1000)), tmp_path / "big.jpg")
    img = load_image(path, LIMIT, min_size=224)
    assert img.size == (400, 250)  # 1/4 scale: 1/8 would make the short side 125 < 224
    assert load_image(path, LIMIT).size == (1600, 1000)


def test_pil_globals_are_left_alone(tmp_path: Path) -> None:
    filters, max_pixels = list(warnings.filters), Image.MAX_IMAGE_PIXELS
    path = save(photo(0), tmp_path / "a.jpg")
    probe_image(path, LIMIT, hashes=True)
    load_image(path, LIMIT)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert Image.MAX_IMAGE_PIXELS == max_pixels and warnings.filters == filters


# ------------------------------------------------------------------------------------------- resizing


def test_resize_policies_give_a_square() -> None:
    img = halves((300, 100), GREEN, BLUE)
    for policy in ("pad", "crop", "stretch"):
        out = resize_image(img, 90, policy)
        assert (out.mode, out.size) == ("RGB", (90, 90))


def test_pad_keeps_aspect_with_bands() -> None:
    out = resize_image(Image.new("RGB", (300, 100), RED), 90, "pad")
    assert out.getpixel((45, 5)) == BLACK and out.getpixel((45, 84)) == BLACK
    assert out.getpixel((45, 45)) == RED and out.getpixel((0, 45)) == RED and out.getpixel((89, 45)) == RED
    rows = np.asarray(out)[:, 45]
    assert (rows == RED).all(axis=1).sum() == 30
    white = resize_image(Image.new("RGB", (300, 100), RED), 90, "pad", pad_color=WHITE)
    assert white.getpixel((45, 5)) == WHITE


def test_pad_keeps_a_panorama_recognisable() -> None:
    out = resize_image(halves((600, 100), GREEN, BLUE), 60, "pad")
    assert close(out.getpixel((5, 30)), GREEN) and close(out.getpixel((55, 30)), BLUE)
    assert out.getpixel((30, 5)) == BLACK


def test_crop_and_stretch_have_no_pad_colour() -> None:
    img = Image.new("RGB", (300, 100), RED)
    for policy in ("crop", "stretch"):
        assert (np.asarray(resize_image(img, 90, policy)) == RED).all()
    crop = resize_image(halves((300, 100), GREEN, BLUE), 50, "crop")  # keeps the middle 100x100
    assert close(crop.getpixel((5, 25)), GREEN) and close(crop.getpixel((45, 25)), BLUE)


def test_resize_rejects_unknown_policy() -> None:
    with pytest.raises(InputError, match="data.image.resize"):
        resize_image(Image.new("RGB", (10, 10)), 8, "squash")


# --------------------------------------------------------------------------------------- augmentation


def gradient(size: tuple[int, int] = (64, 48)) -> Image.Image:
    x = np.linspace(0, 255, size[0], dtype=np.float32)[None, :]
    y = np.linspace(0, 255, size[1], dtype=np.float32)[:, None]
    planes = [x + 0 * y, 0 * x + y, (x + y) / 2]
    return Image.fromarray(np.stack(planes, axis=-1).astype(np.uint8))


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img).astype(int)


def test_augmenter_is_deterministic() -> None:
    cfg = AugmentConfig(enabled=True)
    img = photo(7, (64, 48))
    augmenter = Augmenter(cfg)
    a, b, c = (augmenter(img, np.random.default_rng(s)) for s in (1, 1, 2))
    assert a.tobytes() == b.tobytes() and a.tobytes() != c.tobytes()


def test_augmenter_keeps_size_and_mode() -> None:
    augmenter = Augmenter(AugmentConfig(enabled=True, rotation=30, scale=(0.7, 1.3), crop=0.6, translate=0.2,
                                        fill="reflect"))
    rng = np.random.default_rng(0)
    for size in ((64, 48), (37, 23), (20, 90)):
        for _ in range(3):
            out = augmenter(photo(8, size), rng)
            assert (out.size, out.mode) == (size, "RGB")


def test_disabled_or_neutral_augmenter_changes_nothing() -> None:
    img = gradient()
    assert Augmenter(AugmentConfig(enabled=False))(img, np.random.default_rng(0)) is img
    assert Augmenter(NEUTRAL)(img, np.random.default_rng(0)).tobytes() == img.tobytes()


def test_flip_alone_is_an_exact_mirror() -> None:
    img = gradient()
    out = Augmenter(dataclasses.replace(NEUTRAL, hflip=1.0))(img, np.random.default_rng(0))
    assert out.tobytes() == ImageOps.mirror(img).tobytes()


@pytest.mark.parametrize("step", [{"rotation": 20.0}, {"scale": (1.2, 1.3)}, {"crop": 0.5},
                                  {"translate": 0.2}])
def test_each_step_works_alone(step: dict) -> None:
    img = gradient()
    out = Augmenter(dataclasses.replace(NEUTRAL, **step))(img, np.random.default_rng(3))
    assert out.size == img.size and out.tobytes() != img.tobytes()


def test_shift_and_crop_move_content_as_documented() -> None:
    augmenter = Augmenter(NEUTRAL)
    shifted = augmenter.apply(Image.new("RGB", (40, 40), WHITE), AugmentParams(shift=(0.25, 0.0)))
    assert shifted.getpixel((5, 20)) == BLACK and shifted.getpixel((30, 20)) == WHITE
    quadrants = halves((40, 40), RED, BLUE)
    quadrants.paste(GREEN, (0, 20, 40, 40))
    top_left = augmenter.apply(quadrants, AugmentParams(crop=(0.0, 0.0, 0.5, 0.5)))
    assert close(top_left.getpixel((2, 2)), RED) and close(top_left.getpixel((30, 30)), RED)


def test_fill_modes() -> None:
    white = Image.new("RGB", (64, 64), WHITE)
    turned = AugmentParams(angle=30.0)
    outputs = {fill: Augmenter(dataclasses.replace(NEUTRAL, fill=fill), fill_color=BLACK).apply(white, turned)
               for fill in ("constant", "edge", "reflect")}
    corners = [(0, 0), (63, 0), (0, 63), (63, 63)]
    assert all(outputs["constant"].getpixel(c) == BLACK for c in corners)
    for fill in ("edge", "reflect"):
        assert pixels(outputs[fill]).min() > 240, fill
    zoom_out = AugmentParams(scale=0.5, angle=10.0)
    results = [pixels(Augmenter(dataclasses.replace(NEUTRAL, fill=fill)).apply(gradient(), zoom_out))
               for fill in ("constant", "edge", "reflect")]
    assert not np.array_equal(results[0], results[1]) and not np.array_equal(results[1], results[2])


def test_random_rotation_fills_corners() -> None:
    cfg = dataclasses.replace(NEUTRAL, rotation=45.0)
    white = Image.new("RGB", (64, 64), WHITE)
    assert abs(Augmenter(cfg).sample(np.random.default_rng(0)).angle) > 10
    constant = Augmenter(cfg)(white, np.random.default_rng(0))
    edge = Augmenter(dataclasses.replace(cfg, fill="edge"))(white, np.random.default_rng(0))
    assert BLACK in [constant.getpixel(c) for c in ((0, 0), (63, 0), (0, 63), (63, 63))]
    assert pixels(edge).min() > 240


def test_constant_fill_uses_pad_colour() -> None:
    cfg = ImageConfig(pad_color=(0, 0, 255), augment=dataclasses.replace(NEUTRAL, scale=(0.5, 0.5)))
    out = Augmenter.for_images(cfg)(Image.new("RGB", (40, 40), WHITE), np.random.default_rng(0))
    assert out.getpixel((0, 0)) == BLUE


@pytest.mark.parametrize("change", [{"hflip": 1.5}, {"rotation": -1.0}, {"scale": (1.2, 1.0)},
                                    {"scale": (0.0, 1.0)}, {"crop": 0.0}, {"translate": 1.0},
                                    {"fill": "wrap"}])
def test_bad_augment_config_is_an_input_error(change: dict) -> None:
    with pytest.raises(InputError, match="data.image.augment"):
        Augmenter(dataclasses.replace(AugmentConfig(), **change))


# ------------------------------------------------------------------------------------------- pipeline


@pytest.mark.parametrize("policy", ["pad", "crop", "stretch"])
def test_prepare_image(tmp_path: Path, policy: str) -> None:
    path = save(photo(9, (900, 300)), tmp_path / "a.jpg")
    cfg = ImageConfig(size=64, resize=policy, augment=AugmentConfig(enabled=True, fill="edge"))
    augmenter = Augmenter.for_images(cfg)
    plain = prepare_image(path, cfg)
    a = prepare_image(path, cfg, augmenter, np.random.default_rng(1))
    b = prepare_image(path, cfg, augmenter, np.random.default_rng(1))
    assert plain.size == a.size == (64, 64) and plain.mode == a.mode == "RGB"
    assert a.tobytes() == b.tobytes() and a.tobytes() != plain.tobytes()
    off = dataclasses.replace(cfg, augment=AugmentConfig(enabled=False))
    assert prepare_image(path, off, augmenter, np.random.default_rng(1)).tobytes() == plain.tobytes()
    assert prepare_image(path, cfg, augmenter).tobytes() == plain.tobytes()  # no generator: not augmented


def test_prepare_image_passes_errors_on(tmp_path: Path) -> None:
    with pytest.raises(ImageError):
        prepare_image(truncated_jpeg(tmp_path / "cut.jpg"), ImageConfig())


def test_probe_aspect_and_mismatch_properties() -> None:
    probe = ImageProbe(width=300, height=100, format="JPEG", name_format="PNG", n_frames=1, mode="RGB",
                       sha256=None, phash=None)
    assert probe.aspect == 3.0 and probe.format_mismatch


def test_load_within_shrinks_to_the_budget_keeping_the_aspect(tmp_path):
    from mmtune.data.images import load_within

    big = tmp_path / "big.jpg"
    Image.effect_noise((1600, 800), 40).convert("RGB").save(big, format="JPEG")
    small = tmp_path / "small.png"
    Image.new("RGB", (120, 60), (1, 2, 3)).save(small)
    assert load_within(big, 64_000_000, 448).size == (448, 224)
    assert load_within(small, 64_000_000, 448).size == (120, 60)
