"""A classify request's body -> posts whose images live in memory, or a BadRequest naming the field.

Accepted bodies:
    JSON      {"caption": "...", "images": ["<base64>", ...]}   one post
              {"posts": [{...}, ...]} or [{...}, ...]              several posts
    multipart caption=... and files under images (one post)

Limits, all checked before the work they guard: the body's bytes (before it is parsed), JSON nesting depth,
posts per request, images per post, each image's bytes (before base64 is decoded) and pixels (from its header,
before it is decoded: data/images.py, as in training). Images are never written to disk: each one becomes an
anonymous in-memory file (memfd) that training's own loader reads by its /proc path, so a request's images pass
exactly the checks and decoding a training image does.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmtune.config import ImageConfig
from mmtune.data.images import ImageError, load_image
from mmtune.data.post import Post

_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"\\')


class BadRequest(Exception):
    """A request the service refuses: the HTTP status, the field at fault and why."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.status = status
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Limits:
    max_posts: int = 64
    max_images: int = 4
    max_caption_chars: int = 20_000
    max_depth: int = 8
    max_image_bytes: int = 10 << 20
    max_pixels: int = 64_000_000
    max_body_bytes: int = 64 << 20  # a few full-size images in base64, with room for captions

    @classmethod
    def for_images(cls, image: ImageConfig, **overrides: Any) -> Limits:
        """The training limits of data.image (max_bytes, max_pixels), capped for a service at 10 MB per image."""
        return cls(max_image_bytes=min(image.max_bytes, 10 << 20), max_pixels=image.max_pixels, **overrides)


class MemoryImages:
    """Anonymous in-memory files (memfd) holding a request's images, closed when the request is answered."""

    def __init__(self) -> None:
        self._fds: list[int] = []

    def add(self, data: bytes) -> Path:
        fd = os.memfd_create("mmtune-request-image", os.MFD_CLOEXEC)
        self._fds.append(fd)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        return Path(f"/proc/self/fd/{fd}")

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()



def parse_json(body: bytes, limits: Limits) -> list[dict[str, Any]]:
    """The raw posts of a JSON body (not yet checked field by field)."""
    check_depth(body, limits.max_depth)
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadRequest(400, "body", f"not valid JSON ({' '.join(str(exc).split())[:100]})") from None
    if isinstance(data, dict) and "posts" in data:
        data = data["posts"]
        where = "posts"
    else:
        where = "body"
    raw = data if isinstance(data, list) else [data]
    if not raw:
        raise BadRequest(422, where, "no posts")
    if len(raw) > limits.max_posts:
        raise BadRequest(413, where, f"{len(raw)} posts > {limits.max_posts} per request")
    return raw


def check_depth(body: bytes, max_depth: int) -> None:
    """Refuse JSON nested deeper than `max_depth` before parsing it (a nesting bomb costs the parser its stack)."""
    depth, in_string, escaped = 0, False, False
    for byte in body.translate(None, _NOT_STRUCTURE):  # base64 and text hold none of these: what is left is short
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > max_depth:
                raise BadRequest(400, "body", f"JSON nested deeper than {max_depth} levels")
        elif byte in (0x5D, 0x7D):
            depth -= 1


def posts_from_json(raw: Sequence[Any], limits: Limits, memory: MemoryImages) -> list[Post]:
    prefix = "posts" if len(raw) > 1 else ""
    posts = []
    for index, item in enumerate(raw):
        where = f"{prefix}[{index}]." if prefix else ""
        if not isinstance(item, dict):
            raise BadRequest(422, f"{prefix}[{index}]" if prefix else "body", "a post must be a JSON object")
        unknown = sorted(set(item) - {"caption", "images", "id"})
        if unknown:
            raise BadRequest(422, f"{where}{unknown[0]}", "unknown field (known: caption, images, id)")
        if not isinstance(item.get("id", ""), str):
            raise BadRequest(422, f"{where}id", "must be a string")
        images = item.get("images", [])
        if not isinstance(images, list) or not all(isinstance(x, str) for x in images):
            raise BadRequest(422, f"{where}images", "must be a list of base64 strings")
        datas = [_base64(value, f"{where}images[{i}]", limits) for i, value in enumerate(images[:limits.max_images])]
        posts.append(make_post(index, item.get("caption"), datas, len(images), where, limits, memory))
    return posts


def _base64(value: str, field: str, limits: Limits) -> bytes:
    if value.startswith("data:"):  # a data URL, as a browser's FileReader gives it
        value = value.partition(",")[2]
    if len(value) * 3 // 4 > limits.max_image_bytes + 2:
        raise BadRequest(413, field, f"image over {limits.max_image_bytes} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(422, field, "not valid base64") from None


def make_post(index: int, caption: Any, images: list[bytes], count: int, where: str, limits: Limits,
              memory: MemoryImages) -> Post:
    """One checked post; each image is decoded once here, with training's checks, to refuse what is not one."""
    if caption is None:
        raise BadRequest(422, f"{where}caption", "missing (give the post's text; it may be empty)")
    if not isinstance(caption, str):
        raise BadRequest(422, f"{where}caption", "must be a string")
    if len(caption) > limits.max_caption_chars:
        raise BadRequest(413, f"{where}caption", f"over {limits.max_caption_chars} characters")
    if count > limits.max_images:
        raise BadRequest(413, f"{where}images", f"{count} images > {limits.max_images} per post")
    paths = []
    for i, data in enumerate(images):
        field = f"{where}images[{i}]"
        if len(data) > limits.max_image_bytes:
            raise BadRequest(413, field, f"image over {limits.max_image_bytes} bytes")
        path = memory.add(data)
        try:
            load_image(path, limits.max_pixels, min_size=64, max_bytes=limits.max_image_bytes)
        except ImageError as exc:
            status = 413 if "bomb" in str(exc) or "bytes" in str(exc) else 422
            raise BadRequest(status, field, str(exc)) from None
        paths.append(path)
    return Post(id=str(index), images=tuple(paths), text=caption)


def parse_multipart(body: bytes, content_type: str, limits: Limits) -> tuple[str | None, list[bytes]]:
    """(caption, image bytes) of a multipart/form-data body, parsed in memory."""
    from multipart.multipart import MultipartParser, parse_options_header

    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise BadRequest(400, "body", "multipart body without a boundary")
    parts: list[dict[str, Any]] = []
    header: dict[str, bytes] = {}
    current: dict[str, Any] = {}

    def begin() -> None:
        current.clear()
        current.update(headers={}, data=bytearray())
        header.update(field=b"", value=b"")

    def header_end() -> None:
        current["headers"][header["field"].lower()] = header["value"]
        header.update(field=b"", value=b"")

    def data(chunk: bytes, start: int, end: int) -> None:
        current["data"] += chunk[start:end]

    callbacks = {
        "on_part_begin": begin, "on_part_data": data, "on_part_end": lambda: parts.append(dict(current)),
        "on_header_field": lambda b, s, e: header.update(field=header["field"] + b[s:e]),
        "on_header_value": lambda b, s, e: header.update(value=header["value"] + b[s:e]),
        "on_header_end": header_end,
    }
    try:
        MultipartParser(boundary, callbacks).write(body)
    except Exception as exc:  # python-multipart raises its own error types for every malformed body
        raise BadRequest(400, "body", f"malformed multipart body ({' '.join(str(exc).split())[:80]})") from None
    caption, images = None, []
    for part in parts:
        _, disposition = parse_options_header(part["headers"].get(b"content-disposition", b""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        if name == "caption":
            try:
                caption = bytes(part["data"]).decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest(422, "caption", "not UTF-8 text") from None
        elif name == "images":
            images.append(bytes(part["data"]))
        else:
            raise BadRequest(422, name or "body", "unknown form field (known: caption, images)")
    return caption, images
