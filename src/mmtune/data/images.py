"""Images: cheap probing for the audit, safe loading to RGB, resize policies and augmentation.

PIL + numpy only. Every file is read through `read_image_bytes`: regular files only (a FIFO, device or
socket is never read) and at most data.image.max_bytes. Nothing here touches PIL globals
(`ImageFile.LOAD_TRUNCATED_IMAGES`, `Image.MAX_IMAGE_PIXELS`); the one warning filter it adds is
explained where it is set.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import imagehash
import numpy as np
from PIL import ExifTags, Image, ImageFile, UnidentifiedImageError

from mmtune.config import AugmentConfig, ImageConfig
from mmtune.errors import InputError
from mmtune.files import IsNotRegular, open_regular

RGB = tuple[int, int, int]
RESIZE_POLICIES = ("pad", "crop", "stretch")
FILL_MODES = ("constant", "edge", "reflect")

# Formats we let PIL try, most common first. Why a short list: PIL's full registry includes formats
# without magic bytes (TGA, ...) that would "open" random bytes, and EPS, which runs Ghostscript on
# untrusted files. Formats whose plugin is not installed (HEIF) are skipped at call time.
_OPEN_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF", "HEIF", "ICO")
# MPO is what phones write: a JPEG with extra frames that every JPEG reader shows as a JPEG.
_FORMAT_ALIASES = {"MPO": "JPEG"}
_EXTENSION_FORMATS = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".jfif": "JPEG", ".jif": "JPEG", ".mpo": "JPEG",
    ".png": "PNG", ".apng": "PNG", ".gif": "GIF", ".webp": "WEBP", ".bmp": "BMP", ".dib": "BMP",
    ".tif": "TIFF", ".tiff": "TIFF", ".avif": "AVIF", ".heic": "HEIF", ".heif": "HEIF", ".ico": "ICO",
}
# Same table as ImageOps.exif_transpose.
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# For callers without the config at hand; the same default as data.image.max_bytes.
DEFAULT_MAX_BYTES = ImageConfig().max_bytes
_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_WHITE = (255, 255, 255)
_BICUBIC = Image.Resampling.BICUBIC
# Why 3.0: Pillow's docs call it indistinguishable from a plain resize, and it makes a 10x downscale
# several times faster (an integer box reduce first, then the filter on the small image).
_REDUCING_GAP = 3.0
# Reduced-scale JPEG decoding in probe_image: libjpeg decodes at 1/2, 1/4 or 1/8 while both sides stay
# >= this, enough for the 32x32 perceptual hash and still a full pass over the compressed data.
_PROBE_DRAFT = 64

# Why a process-wide filter, limited to this one warning: our max_pixels check replaces PIL's bomb
# warning, and a local catch_warnings() is not thread-safe (images are probed from a thread pool).
# Changing Image.MAX_IMAGE_PIXELS instead would change PIL's behaviour for the whole process.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ImageError(Exception):
    """An image that cannot be used; the message is a short one-line reason."""


@dataclass(frozen=True)
class ImageProbe:
    """What probe_image learns about a file. Sizes are as displayed (after EXIF orientation)."""

    width: int
    height: int
    format: str
    name_format: str | None
    n_frames: int
    mode: str
    sha256: str | None = None
    phash: int | None = None

    @property
    def format_mismatch(self) -> bool:
        return self.name_format is not None and self.name_format != self.format

    @property
    def aspect(self) -> float:
        short = min(self.width, self.height)
        return max(self.width, self.height) / short if short > 0 else math.inf


# ------------------------------------------------------------------------------------------ probing


def probe_image(
    path: Path, max_pixels: int, hashes: bool = False, max_bytes: int = DEFAULT_MAX_BYTES, name: str | None = None
) -> ImageProbe:
    """Identify `path` by content, refuse bombs before decoding, decode the first frame cheaply.

    Raises ImageError for anything unusable; FileNotFoundError passes through. With `hashes`: sha256
    of the file's bytes and a 64-bit perceptual hash (as an unsigned int). `name` (default: the
    path's) is the name whose extension the content is compared with.
    """
    path = Path(path)
    data = read_image_bytes(path, max_bytes)
    with io.BytesIO(data) as fp:
        img = _open(fp, max_pixels)
        fmt = _format_name(img.format)
        mode, (width, height) = img.mode, img.size
        try:
            with _decoding(fmt):
                n_frames = int(getattr(img, "n_frames", 1))
                # Why "L": the hash only needs luma, and libjpeg then skips chroma upsampling and colour
                # conversion. Entropy decoding still covers every byte, so truncation is still caught.
                img.draft("L", (_PROBE_DRAFT, _PROBE_DRAFT))
                img.load()
                orientation = _orientation(img)
                phash = _phash(img, orientation) if hashes else None
        finally:
            img.close()  # why: frees the pixels now, even while an ImageError still references this frame
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    suffix = Path(name).suffix if name is not None else path.suffix
    return ImageProbe(
        width=width, height=height, format=fmt, name_format=_EXTENSION_FORMATS.get(suffix.lower()),
        n_frames=n_frames, mode=mode, sha256=hashlib.sha256(data).hexdigest() if hashes else None, phash=phash,
    )


def _phash(img: Image.Image, orientation: int) -> int:
    small = _hash_view(img)
    method = _ORIENTATION.get(orientation)
    if method is not None:
        small = small.transpose(method)
    bits = imagehash.phash(small).hash.ravel()
    # The same integer as int(str(hash), 16), without imagehash's per-bit string building.
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def _hash_view(img: Image.Image) -> Image.Image:
    """A small image that looks like what load_image shows: phash resamples to 32x32 anyway."""
    if img.mode != "L":
        # Through RGB so that alpha lands on white, as in load_image; phash only reads luma.
        img = _to_rgb(img).convert("L")
    factor = min(img.size) // (2 * _PROBE_DRAFT)
    if factor > 1:
        img = img.reduce(factor)
    return img


# ------------------------------------------------------------------------------------------ loading


def load_image(
    path: Path, max_pixels: int, min_size: int | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> Image.Image:
    """Load the first frame as RGB: EXIF orientation applied, alpha on white, any depth to 8 bits.

    `min_size` lets a JPEG decode at 1/2, 1/4 or 1/8 scale as long as both sides stay >= min_size
    (much faster for big photos that are resized down anyway). FileNotFoundError passes through.
    """
    with io.BytesIO(read_image_bytes(Path(path), max_bytes)) as fp, _open(fp, max_pixels) as img:
        # Leaving `with img` only detaches the file; the pixels stay valid, so `rgb` may be `img`.
        with _decoding(_format_name(img.format)):
            if min_size:
                img.draft("RGB", (min_size, min_size))
            img.load()
            orientation = _orientation(img)
            rgb = _to_rgb(img)
    method = _ORIENTATION.get(orientation)
    return rgb.transpose(method) if method is not None else rgb


def load_within(path: Path, max_pixels: int, side: int, max_bytes: int = DEFAULT_MAX_BYTES) -> Image.Image:
    """`load_image`, shrunk (aspect kept) so that its longer side is at most `side`: what a VLM's image budget
    takes. JPEGs decode at reduced scale down to that size; a smaller image is left as it is."""
    image = load_image(path, max_pixels, min_size=side, max_bytes=max_bytes)
    if max(image.size) > side:
        image.thumbnail((side, side), Image.Resampling.BICUBIC)
    return image


def read_image_bytes(path: Path, max_bytes: int) -> bytes:
    """The bytes of an image file: only a regular file (never a FIFO, device or socket, which could block
    or never end), and at most `max_bytes` (data.image.max_bytes), checked before and while reading.
    FileNotFoundError passes through; every other refusal is an ImageError."""
    try:
        fd = open_regular(path)
    except FileNotFoundError:
        raise
    except IsNotRegular as exc:
        raise ImageError(f"not a regular file ({exc})") from None
    except (OSError, ValueError) as exc:
        raise ImageError(f"cannot read file ({getattr(exc, 'strerror', None) or exc})") from None
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(fd).st_size
        if size > max_bytes:
            raise ImageError(f"{size} bytes > data.image.max_bytes={max_bytes}")
        try:
            data = handle.read(max_bytes + 1)  # why +1: a file that grew since fstat is caught too
        except OSError as exc:
            raise ImageError(f"cannot read file ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise ImageError(f"more than data.image.max_bytes={max_bytes} bytes")
    return data


def _open(fp: IO[bytes], max_pixels: int) -> ImageFile.ImageFile:
    """Identify by content (header only) and apply the pixel limit before anything is decoded."""
    Image.init()  # why: formats outside preinit (WEBP, TIFF, ...) are only in Image.OPEN after init
    formats = tuple(f for f in _OPEN_FORMATS if f in Image.OPEN)
    try:
        img = Image.open(fp, formats=formats)
    except Image.DecompressionBombError as exc:
        raise ImageError(_pil_bomb_reason(exc, max_pixels)) from exc
    except UnidentifiedImageError as exc:
        raise ImageError("empty file" if _is_empty(fp) else "not an image file") from exc
    except MemoryError as exc:
        raise ImageError("image header asks for too much memory") from exc
    except Exception as exc:  # plugins raise OSError, EOFError, ValueError, ... on a broken header
        raise ImageError(f"corrupt image header ({_short(exc)})") from exc
    width, height = img.size
    if width * height > max_pixels:
        img.close()
        raise ImageError(f"decompression bomb: {width}x{height} > {max_pixels} pixels")
    if width <= 0 or height <= 0:
        img.close()
        raise ImageError(f"empty image ({width}x{height})")
    return img


@contextmanager
def _decoding(fmt: str) -> Iterator[None]:
    """Turn whatever PIL raises while decoding into an ImageError with a short reason."""
    try:
        yield
    except ImageError:
        raise
    except MemoryError as exc:
        raise ImageError(f"{fmt} image too large to decode (out of memory)") from exc
    except Exception as exc:
        if isinstance(exc, EOFError) or "truncated" in str(exc).lower():
            raise ImageError(f"truncated or corrupt {fmt} data") from exc
        raise ImageError(f"corrupt {fmt} data ({_short(exc)})") from exc


def _pil_bomb_reason(exc: Exception, max_pixels: int) -> str:
    # PIL refuses images over 2 * MAX_IMAGE_PIXELS itself, before our check can see the size.
    found = re.search(r"\((\d+) pixels\)", str(exc))
    if found is None:
        return "decompression bomb: over Pillow's pixel limit"
    pixels = int(found.group(1))
    limit = max_pixels if pixels > max_pixels else f"Pillow's limit of {2 * (Image.MAX_IMAGE_PIXELS or 0)}"
    return f"decompression bomb: {pixels} > {limit} pixels"


def _is_empty(fp: IO[bytes]) -> bool:
    fp.seek(0)
    return not fp.read(1)


def _short(exc: BaseException, limit: int = 80) -> str:
    text = " ".join(str(exc).split()) or "no detail given"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _format_name(fmt: str | None) -> str:
    fmt = fmt or "unknown"
    return _FORMAT_ALIASES.get(fmt, fmt)


def _orientation(img: Image.Image) -> int:
    """EXIF orientation 1..8; broken EXIF counts as 1 (the pixels are fine, only the tag is not)."""
    try:
        value = img.getexif().get(ExifTags.Base.Orientation, 1)
        return int(value) if int(value) in range(1, 9) else 1
    except Exception:
        return 1


# ------------------------------------------------------------------------------------- conversions


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode to RGB; returns `img` itself when it already is plain RGB."""
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img
    if mode in _HIGH_DEPTH_MODES:
        return _high_depth_to_rgb(img)
    try:
        if mode in _ALPHA_MODES or "transparency" in img.info:
            return _on_white(img.convert("RGBA"))
        return img.convert("RGB")
    except ValueError as exc:
        raise ImageError(f"unsupported colour mode {mode}") from exc


def _on_white(rgba: Image.Image) -> Image.Image:
    out = Image.new("RGB", rgba.size, _WHITE)
    out.paste(rgba, (0, 0), rgba)
    return out


def _high_depth_to_rgb(img: Image.Image) -> Image.Image:
    """16/32-bit integer and float images to 8 bits, guessing the value range from the data."""
    values = np.nan_to_num(np.asarray(img, dtype=np.float32))
    if img.mode.startswith("I;16"):
        values = values / 257.0
    else:
        low, high = float(values.min()), float(values.max())
        if img.mode == "F" and low >= 0.0 and high <= 1.0:
            values = values * 255.0
        elif low < 0.0 or high > 65535.0:
            values = (values - low) * (255.0 / max(high - low, 1e-12))
        elif high > 255.0:  # 16-bit range; values already in 0..255 stay as they are
            values = values / 257.0
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8)).convert("RGB")


# ------------------------------------------------------------------------------------------ resizing


def resize_image(img: Image.Image, size: int, policy: str, pad_color: RGB = (0, 0, 0)) -> Image.Image:
    """A `size` x `size` RGB image: "pad" (fit inside, centred), "crop" (centre) or "stretch"."""
    if size < 1:
        raise InputError(f"data.image.size must be >= 1, got {size}")
    img = _to_rgb(img)
    width, height = img.size
    if policy == "stretch":
        return img.resize((size, size), _BICUBIC, reducing_gap=_REDUCING_GAP)
    if policy == "crop":
        side = min(width, height)
        left, top = (width - side) / 2, (height - side) / 2
        # Why `box`: crop and resize in one resampling pass, straight from the source pixels.
        box = (left, top, left + side, top + side)
        return img.resize((size, size), _BICUBIC, box=box, reducing_gap=_REDUCING_GAP)
    if policy == "pad":
        return _pad(img, size, pad_color)
    raise InputError(f"data.image.resize must be one of {', '.join(RESIZE_POLICIES)}, got {policy!r}")


def _pad(img: Image.Image, size: int, pad_color: RGB) -> Image.Image:
    width, height = img.size
    scale = size / max(width, height)
    inner_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    inner = img.resize(inner_size, _BICUBIC, reducing_gap=_REDUCING_GAP)
    canvas = Image.new("RGB", (size, size), tuple(pad_color))
    canvas.paste(inner, ((size - inner_size[0]) // 2, (size - inner_size[1]) // 2))
    return canvas


def _shrink(img: Image.Image, side: int, policy: str) -> Image.Image:
    """Downscale (never up) so the side the policy fits to is `side`; aspect kept."""
    width, height = img.size
    reference = max(width, height) if policy == "pad" else min(width, height)
    if reference <= side:
        return img
    scale = side / reference
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return img.resize(new_size, _BICUBIC, reducing_gap=_REDUCING_GAP)


# -------------------------------------------------------------------------------------- augmentation


@dataclass(frozen=True)
class AugmentParams:
    """One draw of the augmentation: everything in fractions so it applies to any image size."""

    flip: bool = False
    angle: float = 0.0  # degrees, counter-clockwise
    scale: float = 1.0  # > 1 zooms in
    crop: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)  # kept box: left, top, right, bottom
    shift: tuple[float, float] = (0.0, 0.0)  # fractions of width and height


class Augmenter:
    """Training-time augmentation: flip, then rotation, zoom, crop and shift as one affine warp."""

    # Why a fixed count: every call draws the same numbers whichever steps are switched off, so
    # switching one step off does not change what the others draw.
    _DRAWS = 9

    def __init__(self, cfg: AugmentConfig, fill_color: RGB = (0, 0, 0)) -> None:
        _check_augment(cfg)
        self.cfg = cfg
        self.fill_color = tuple(fill_color)

    @classmethod
    def for_images(cls, cfg: ImageConfig) -> Augmenter:
        """An augmenter whose constant fill is the pad colour, so fill and padding look alike."""
        return cls(cfg.augment, fill_color=cfg.pad_color)

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        """One draw from `rng` applied; the caller owns the generator (models/image_pipeline.py seeds it)."""
        if not self.cfg.enabled:
            return img
        return self.apply(img, self.sample(rng))

    def sample(self, rng: np.random.Generator) -> AugmentParams:
        cfg = self.cfg
        u = rng.random(self._DRAWS)
        keep_w, keep_h = cfg.crop + u[3] * (1 - cfg.crop), cfg.crop + u[4] * (1 - cfg.crop)
        left, top = u[5] * (1 - keep_w), u[6] * (1 - keep_h)
        return AugmentParams(
            flip=bool(u[0] < cfg.hflip),
            angle=float((2 * u[1] - 1) * cfg.rotation),
            scale=float(cfg.scale[0] + u[2] * (cfg.scale[1] - cfg.scale[0])),
            crop=(float(left), float(top), float(left + keep_w), float(top + keep_h)),
            shift=(float((2 * u[7] - 1) * cfg.translate), float((2 * u[8] - 1) * cfg.translate)),
        )

    def apply(self, img: Image.Image, params: AugmentParams) -> Image.Image:
        """Apply one draw; the output has the input's size."""
        if img.mode not in ("RGB", "L", "RGBA"):
            img = _to_rgb(img)
        if params.flip:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        inverse = np.linalg.inv(_forward_matrix(img.size, params))
        if np.allclose(inverse, np.eye(3), atol=1e-9):
            return img
        if self.cfg.fill == "constant":
            fill = self.fill_color if img.mode == "RGB" else 0
            return _affine(img, inverse, img.size, fill)
        return _affine_padded(img, inverse, self.cfg.fill)


def _check_augment(cfg: AugmentConfig) -> None:
    key = "data.image.augment"
    low, high = cfg.scale
    checks = [
        (0.0 <= cfg.hflip <= 1.0, f"{key}.hflip must be in [0, 1], got {cfg.hflip}"),
        (0.0 <= cfg.rotation <= 180.0, f"{key}.rotation must be in [0, 180] degrees, got {cfg.rotation}"),
        (0.0 < low <= high, f"{key}.scale must be [low, high] with 0 < low <= high, got {list(cfg.scale)}"),
        (0.0 < cfg.crop <= 1.0, f"{key}.crop must be in (0, 1], got {cfg.crop}"),
        (0.0 <= cfg.translate < 1.0, f"{key}.translate must be in [0, 1), got {cfg.translate}"),
        (cfg.fill in FILL_MODES, f"{key}.fill must be one of {', '.join(FILL_MODES)}, got {cfg.fill!r}"),
    ]
    for ok, message in checks:
        if not ok:
            raise InputError(message)


def _forward_matrix(size: tuple[int, int], p: AugmentParams) -> np.ndarray:
    """3x3 map from input to output pixel coordinates (PIL's: pixel centres at +0.5).

    Crop-and-resize-back, then rotation and zoom about the centre, then the shift: one matrix, so the
    image is resampled once whatever steps are on.
    """
    width, height = size
    left, top, right, bottom = p.crop
    crop = np.array([
        [1 / (right - left), 0, -left * width / (right - left)],
        [0, 1 / (bottom - top), -top * height / (bottom - top)],
        [0, 0, 1],
    ])
    theta = math.radians(p.angle)
    cos, sin = p.scale * math.cos(theta), p.scale * math.sin(theta)
    cx, cy = width / 2, height / 2
    tx, ty = p.shift[0] * width, p.shift[1] * height
    # y points down, so [[cos, sin], [-sin, cos]] turns the picture counter-clockwise.
    rotate = np.array([
        [cos, sin, cx + tx - cos * cx - sin * cy],
        [-sin, cos, cy + ty + sin * cx - cos * cy],
        [0, 0, 1],
    ])
    return rotate @ crop


def _affine(img: Image.Image, inverse: np.ndarray, size: tuple[int, int], fill: object) -> Image.Image:
    data = tuple(float(v) for v in inverse[:2].ravel())
    return img.transform(size, Image.Transform.AFFINE, data, resample=_BICUBIC, fillcolor=fill)


def _affine_padded(img: Image.Image, inverse: np.ndarray, fill: str) -> Image.Image:
    """Edge/reflect fill, which PIL's transform lacks.

    Why: pad the source with numpy (mode "edge" or "reflect") by as much as the warp reaches outside
    it, then warp from the padded source. Sampling the padded source at (x + margin, y + margin) is
    the same as warping the padded image and cropping the margin back off, without computing the
    margin's pixels.
    """
    width, height = img.size
    corners = inverse @ np.array([[0, width, 0, width], [0, 0, height, height], [1, 1, 1, 1]], dtype=float)
    xs, ys = corners[0], corners[1]
    reach = max(0.0, -xs.min(), xs.max() - width, -ys.min(), ys.max() - height)
    margin = math.ceil(reach) + 3  # + the bicubic kernel's reach
    pixels = np.asarray(img)
    pad = ((margin, margin), (margin, margin)) + ((0, 0),) * (pixels.ndim - 2)
    padded = Image.fromarray(np.pad(pixels, pad, mode=fill))
    shift = np.array([[1, 0, margin], [0, 1, margin], [0, 0, 1]], dtype=float)
    return _affine(padded, shift @ inverse, (width, height), None)


# ----------------------------------------------------------------------------------------- pipeline


def prepare_image(
    path: Path, cfg: ImageConfig, augmenter: Augmenter | None = None, rng: np.random.Generator | None = None
) -> Image.Image:
    """Load, augment (training: with both an augmenter and its generator), and resize to the model's square input.

    Order, and why: load at reduced JPEG scale when possible -> shrink (aspect kept) to a working size
    a bit above `cfg.size` -> augment -> final resize by policy. Augmenting at full resolution would
    cost up to 100x more for detail the final resize throws away; augmenting after the final resize
    would rotate the pad bands and leave no margin for zoom-in and crops, which then upsample. The
    working size is enlarged by the largest zoom the augmenter can draw so zoomed-in crops keep detail.
    """
    if augmenter is not None and rng is not None and cfg.augment.enabled:
        work = _working_size(cfg.size, augmenter.cfg)
        loaded = load_image(path, cfg.max_pixels, min_size=work, max_bytes=cfg.max_bytes)
        img = augmenter(_shrink(loaded, work, cfg.resize), rng)
    else:
        img = load_image(path, cfg.max_pixels, min_size=cfg.size, max_bytes=cfg.max_bytes)
    return resize_image(img, cfg.size, cfg.resize, cfg.pad_color)


def _working_size(size: int, aug: AugmentConfig) -> int:
    zoom = max(1.0, aug.scale[1]) / aug.crop
    # At least 1/8 extra: the warp's bicubic resampling softens a little; at most 2x: cost grows as square.
    return math.ceil(size * min(2.0, max(1.125, zoom)))
