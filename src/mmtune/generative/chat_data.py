"""Chat and preference data for TRL: read files in the common VLM layouts into prompt/completion rows.

Layouts (`chat.format`, `auto` decides from the first row's keys):
- `messages`: JSONL rows `{"messages": [{"role", "content"}], "images": [...]}` (TRL / HF datasets). Content is a
  string (images then go before the first user text, or where `<image>` stands) or a list of
  `{"type": "image"}` / `{"type": "text", "text": ...}` blocks.
- `sharegpt`: LLaVA / ShareGPT JSON (a list) or InternVL JSONL rows `{"image": name | [names], "conversations":
  [{"from": "human" | "gpt" | "system", "value": "<image>\\n..."}]}`.
- `captions`: image-caption pairs (stage 1 alignment): `data.columns.image` and `data.columns.text` of each row,
  with `chat.caption_prompt` as the user turn.
- `preference`: DPO rows `{"images", "prompt", "chosen", "rejected"}` (strings or message lists).

Why prompt/completion rows and not `messages`: TRL's vision collator then masks every prompt token (image
tokens included) out of the loss, so only answers are trained (with `messages` every token is in the loss).
Images stay file paths here and are loaded (safely, EXIF-rotated, RGB) only when a batch is collated.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmtune.config import ChatConfig, ColumnsConfig
from mmtune.data.checks import UnsafePath, check_image_name_chars, resolve_image_path
from mmtune.data.images import DEFAULT_MAX_BYTES, ImageError, probe_image
from mmtune.data.textfile import (
    JsonError,
    RepeatedKeys,
    check_file,
    describe,
    first_lone_surrogate,
    first_repeated_key,
    iter_lines,
    loads,
    read_text,
)
from mmtune.errors import InputError, shown

log = logging.getLogger(__name__)

LAYOUTS = ("messages", "sharegpt", "captions", "preference")
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "system": "system", "bot": "assistant"}
_ROLES = ("system", "user", "assistant")

Message = dict[str, Any]


class BadRow(Exception):
    """One row that cannot be used; `read_rows` counts it (on_bad_row: skip) or stops (error)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class ChatRows:
    """The rows TRL trains on, plus what was skipped and why (never dropped silently)."""

    rows: list[dict[str, Any]]
    layout: str
    skipped: Counter[str] = field(default_factory=Counter)
    path: Path | None = None  # the file read
    sources: list[str] = field(default_factory=list)  # where each row stands in it (`line 3`, `row 'id'`), as rows


@dataclass(frozen=True)
class ReadRequest:
    path: Path
    images: Path | None
    chat: ChatConfig
    columns: ColumnsConfig
    on_bad_row: str = "skip"
    preference: bool = False
    max_pixels: int = 64_000_000  # data.image.max_pixels: larger images are unreadable_image (bomb limit)
    max_bytes: int = DEFAULT_MAX_BYTES  # data.image.max_bytes: larger files are unreadable_image


def read_rows(request: ReadRequest) -> ChatRows:
    """Every usable row of `request.path` as TRL prompt/completion (or preference) rows with image paths."""
    if request.images is not None and not request.images.is_dir():
        state = "is not a folder" if request.images.exists() else "not found"
        raise InputError(f"{request.images}: the images folder of {request.path} {state}")
    records = list(_iter_records(request.path))
    if not records:
        raise InputError(f"{request.path}: no rows")
    layout = _layout(request, records[0][1])
    result = ChatRows(rows=[], layout=layout, path=request.path)
    for where, record in records:
        try:
            converted = _convert(record, layout, request)
        except BadRow as bad:
            if request.on_bad_row == "error":
                raise InputError(f"{request.path} {where}: {bad}") from None
            result.skipped[bad.reason] += 1
            log.debug(f"{request.path} {where}: skipped ({bad})")
            continue
        result.rows += converted
        result.sources += [where] * len(converted)
    if result.skipped:
        log.warning(f"{request.path}: skipped {sum(result.skipped.values())} bad rows ({dict(result.skipped)})")
    if not result.rows:
        raise InputError(f"{request.path}: no usable rows (skipped: {dict(result.skipped)})")
    return result


# ---- files -------------------------------------------------------------------------------------------------


def _iter_records(path: Path) -> Iterator[tuple[str, Any]]:
    check_file(path)
    if path.suffix.lower() == ".json":
        yield from _iter_json(path)
    elif path.suffix.lower() == ".jsonl":
        yield from _iter_jsonl(path)
    else:
        raise InputError(f"{path}: chat data must be .json (a list of rows) or .jsonl (one row a line)")


def _iter_json(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        data = loads(read_text(path))
    except JsonError as exc:
        raise InputError(f"{path}: {exc.at()}") from None
    if isinstance(data, (dict, RepeatedKeys)):  # {"id": row, ...}, as the ViMMSD files
        pairs = data.pairs if isinstance(data, RepeatedKeys) else list(data.items())
        seen: set[str] = set()
        for key, value in pairs:
            # A repeated id is a bad row of its own, not a silent replacement of the first.
            repeat = _Unreadable("duplicate_id", f"the id '{shown(key)}' repeats")
            yield f"row '{shown(key)}'", value if key not in seen else repeat
            seen.add(key)
    elif isinstance(data, list):
        yield from ((f"row {index}", value) for index, value in enumerate(data))
    else:
        raise InputError(f"{path}: expected a list of rows or an object of rows, got {describe(data)}")


def _iter_jsonl(path: Path) -> Iterator[tuple[str, Any]]:
    for line in iter_lines(path):
        if not line.text.strip():
            continue
        try:
            yield f"line {line.number}", loads(line.text)
        except JsonError as exc:
            yield f"line {line.number}", _Unreadable("invalid_json", exc.short())


@dataclass(frozen=True)
class _Unreadable:
    """A row known to be bad before its content is looked at: the reason and the message."""

    reason: str
    error: str


def _layout(request: ReadRequest, first: Any) -> str:
    wanted = request.chat.format
    if wanted != "auto":
        return wanted
    if isinstance(first, RepeatedKeys):  # the layout shows in the keys all the same; the row itself is bad
        first = dict(first.pairs)
    keys = set(first) if isinstance(first, dict) else set()
    if {"chosen", "rejected"} <= keys:
        return "preference"
    if "messages" in keys:
        return "messages"
    if "conversations" in keys:
        return "sharegpt"
    if request.columns.text in keys:
        return "captions"
    raise InputError(f"{request.path}: chat.format auto cannot tell the layout from the first row's keys "
                     f"{sorted(keys)}; set chat.format to one of {', '.join(LAYOUTS)}")


# ---- rows ----------------------------------------------------------------------------------------------------


def _convert(record: Any, layout: str, request: ReadRequest) -> list[dict[str, Any]]:
    if isinstance(record, _Unreadable):
        raise BadRow(record.reason, record.error)
    if (repeated := first_repeated_key(record)) is not None:
        raise BadRow("duplicate_key", f"the key '{shown(repeated)}' appears twice in one object; which one counts?")
    if (invalid := first_lone_surrogate(record)) is not None:
        # Text a tokenizer cannot take and no file can hold as UTF-8 (a JSON escape of half an emoji).
        raise BadRow("invalid_unicode", f"{invalid}: a lone surrogate, not valid Unicode")
    if not isinstance(record, dict):
        raise BadRow("not_an_object", f"a row must be a JSON object, got {describe(record)}")
    if request.preference != (layout == "preference"):
        raise InputError(f"{request.path}: layout '{layout}' does not fit this command "
                         f"({'DPO needs preference rows' if request.preference else 'SFT needs chat rows'})")
    if layout == "preference":
        return [_preference_row(record, request)]
    images = _image_paths(record, "images" if layout == "messages" else request.columns.image, request)
    if layout == "captions":
        caption = record.get(request.columns.text)
        if not isinstance(caption, str) or not caption.strip():
            raise BadRow("empty_answer", f"'{request.columns.text}' must be a non-empty string")
        turns = [_text_message("user", request.chat.caption_prompt), _text_message("assistant", caption)]
    elif layout == "messages":
        turns = _messages(record.get("messages"), "messages")
    else:
        turns = _sharegpt(record.get("conversations"))
    turns = _with_image_blocks(turns, len(images), request.chat.image_token)
    if request.chat.system_prompt and turns[0]["role"] != "system":
        turns = [_text_message("system", request.chat.system_prompt), *turns]
    return _split_turns(turns, images, request.chat.turns)


def _preference_row(record: dict[str, Any], request: ReadRequest) -> dict[str, Any]:
    missing = [key for key in ("prompt", "chosen", "rejected") if key not in record]
    if missing:
        raise BadRow("missing_key", f"preference row without {', '.join(missing)}")
    images = _image_paths(record, "images" if "images" in record else request.columns.image, request)
    prompt = record["prompt"]
    turns = _messages(prompt, "prompt") if isinstance(prompt, list) else [_text_message("user", _text(prompt))]
    turns = _with_image_blocks(turns, len(images), request.chat.image_token)
    if request.chat.system_prompt and turns[0]["role"] != "system":
        turns = [_text_message("system", request.chat.system_prompt), *turns]
    answers = {key: _answer(record[key], key) for key in ("chosen", "rejected")}
    return {"images": images, "prompt": turns, **answers}


def _answer(value: Any, key: str) -> list[Message]:
    if isinstance(value, list):
        turns = _messages(value, key)
        if [turn["role"] for turn in turns] != ["assistant"]:
            raise BadRow("bad_answer", f"'{key}' must be one assistant message")
        return turns
    return [_text_message("assistant", _text(value, key))]


def _image_paths(record: dict[str, Any], key: str, request: ReadRequest) -> list[str]:
    value = record.get(key)
    names = [] if value is None else [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(name, str) and name for name in names):
        raise BadRow("bad_images", f"'{key}' must be an image name or a list of names")
    paths = []
    for name in names:
        try:
            paths.append(_image_path(name, request))
        except UnsafePath as refused:
            raise BadRow("unsafe_path", str(refused)) from None
    for path in paths:
        try:  # now, not when a batch is collated hours into the run
            probe_image(path, request.max_pixels, max_bytes=request.max_bytes)
        except FileNotFoundError:
            raise BadRow("missing_image", f"image not found: {path}") from None
        except ImageError as error:
            raise BadRow("unreadable_image", f"{path}: {error}") from None
    return [str(path) for path in paths]


def _image_path(name: str, request: ReadRequest) -> Path:
    """With an images folder, names stay inside it (the data layer's rule, links followed); without one, a
    name is a path of its own. Either way a refused name is never opened."""
    if request.images is None:
        check_image_name_chars(name)
        return Path(name)
    return resolve_image_path(request.images, name)


def _messages(value: Any, key: str) -> list[Message]:
    if not isinstance(value, list) or not value:
        raise BadRow("no_messages", f"'{key}' must be a non-empty list of messages")
    turns = []
    for message in value:
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise BadRow("bad_message", f"'{key}': each message needs a role in {_ROLES}")
        turns.append({"role": message["role"], "content": _blocks(message.get("content"), key)})
    return turns


def _sharegpt(value: Any) -> list[Message]:
    if not isinstance(value, list) or not value:
        raise BadRow("no_messages", "'conversations' must be a non-empty list")
    turns = []
    for turn in value:
        speaker = turn.get("from") if isinstance(turn, dict) else None
        role = _SHAREGPT_ROLES.get(speaker) if isinstance(speaker, str) else None
        if role is None:
            raise BadRow("bad_message", f"'conversations': each turn needs 'from' in {sorted(_SHAREGPT_ROLES)}")
        turns.append({"role": role, "content": _blocks(turn.get("value"), "conversations")})
    return turns


def _blocks(content: Any, key: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list) and all(isinstance(b, dict) and b.get("type") in ("text", "image") for b in content):
        return [{"type": "image"} if b["type"] == "image" else {"type": "text", "text": _text(b.get("text"), key)}
                for b in content]
    raise BadRow("bad_content", f"'{key}': content must be a string or a list of text/image blocks")


def _text(value: Any, key: str = "prompt") -> str:
    if not isinstance(value, str):
        raise BadRow("bad_content", f"'{key}' must be a string")
    return value


def _text_message(role: str, text: str) -> Message:
    return {"role": role, "content": [{"type": "text", "text": text}]}


def _with_image_blocks(turns: list[Message], n_images: int, image_token: str) -> list[Message]:
    """`<image>` in the text becomes an image block; with none at all, the images open the first user turn."""
    split = [{**turn, "content": _split_image_tokens(turn["content"], image_token)} for turn in turns]
    placed = sum(block["type"] == "image" for turn in split for block in turn["content"])
    if placed == 0 and n_images:
        first_user = next((i for i, turn in enumerate(split) if turn["role"] == "user"), None)
        if first_user is None:
            raise BadRow("no_user_turn", "no user turn to put the images in")
        split[first_user] = {**split[first_user],
                             "content": [{"type": "image"}] * n_images + split[first_user]["content"]}
        placed = n_images
    if placed != n_images:
        raise BadRow("image_count", f"{placed} image placeholders for {n_images} images")
    if any(block["type"] == "image" for turn in split if turn["role"] != "user" for block in turn["content"]):
        raise BadRow("image_outside_user", "images may only stand in user turns")
    return split


def _split_image_tokens(blocks: list[dict[str, Any]], image_token: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for block in blocks:
        if block["type"] != "text" or image_token not in block["text"]:
            out.append(block)
            continue
        for index, piece in enumerate(block["text"].split(image_token)):
            if index:
                out.append({"type": "image"})
            piece = re.sub(r"^\n|\n$", "", piece)  # LLaVA data writes "<image>\n" before the question
            if piece:
                out.append({"type": "text", "text": piece})
    return out


def _split_turns(turns: list[Message], images: list[str], which: str) -> list[dict[str, Any]]:
    """One prompt/completion row per assistant answer (`all`) or for the last one only (`last`)."""
    answers = [i for i, turn in enumerate(turns) if turn["role"] == "assistant" and i > 0]
    if not answers or turns[answers[-1]]["content"] == [] or not _plain_text(turns[answers[-1]]).strip():
        raise BadRow("empty_answer", "no non-empty assistant answer")
    if which == "last":
        answers = answers[-1:]
    rows = []
    for index in answers:
        if not any(turn["role"] == "user" for turn in turns[:index]):
            raise BadRow("no_user_turn", "an assistant answer before any user turn")
        prompt = turns[:index]
        # A row carries the images its prompt shows: a later turn's image belongs to a later row only.
        shown = sum(block["type"] == "image" for turn in prompt for block in turn["content"])
        rows.append({"images": images[:shown], "prompt": prompt, "completion": [turns[index]]})
    return rows


def _plain_text(turn: Message) -> str:
    return "".join(block.get("text", "") for block in turn["content"] if block["type"] == "text")
