"""Per-post fault detection and the one loading entry point, `load_posts`.

Fault kinds are either *bad* (the post cannot be used: skipped or an error, by `data.on_bad_row`)
or *reported* (kept, and listed by `mmtune inspect` and the run log). Nothing is dropped silently.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import multiprocessing.context
import os
import re
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path, PurePosixPath

from mmtune.config import DataConfig
from mmtune.data.images import ImageError, ImageProbe, probe_image
from mmtune.data.post import Post
from mmtune.data.readers import Record, iter_records
from mmtune.data.text import is_emoji_only, word_count
from mmtune.errors import InputError, lone_surrogate

log = logging.getLogger(__name__)

MISSING_IMAGE = "missing_image"
UNREADABLE_IMAGE = "unreadable_image"
FORMAT_MISMATCH = "format_mismatch"
EXTREME_ASPECT = "extreme_aspect"
EMPTY_TEXT = "empty_text"
EMOJI_ONLY_TEXT = "emoji_only_text"
LONG_TEXT = "long_text"
MULTIPLE_IMAGES = "multiple_images"
UNKNOWN_LABEL = "unknown_label"
DUPLICATE_ID = "duplicate_id"
UNSAFE_PATH = "unsafe_path"
BAD_LABEL = "bad_label"
INVALID_UNICODE = "invalid_unicode"

FAULT_KINDS = (
    MISSING_IMAGE, UNREADABLE_IMAGE, FORMAT_MISMATCH, EXTREME_ASPECT, EMPTY_TEXT, EMOJI_ONLY_TEXT,
    LONG_TEXT, MULTIPLE_IMAGES, UNKNOWN_LABEL, BAD_LABEL, DUPLICATE_ID, UNSAFE_PATH, INVALID_UNICODE,
)
BAD_BY_DEFAULT = frozenset({MISSING_IMAGE, UNREADABLE_IMAGE, UNKNOWN_LABEL, BAD_LABEL, DUPLICATE_ID, UNSAFE_PATH})
# Posts whose images can be probed at the same time: PIL releases the GIL while decoding.
_PROBE_THREADS = max(2, min(8, (os.cpu_count() or 2) * 2))
_CHUNK = 512


@dataclass(frozen=True)
class Fault:
    id: str
    kind: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "kind": self.kind, "detail": self.detail}


@dataclass
class CheckedPost:
    """A record after its checks: the post (None when an image path was refused), faults, probes."""

    record: Record
    post: Post | None
    faults: list[Fault]
    probes: list[ImageProbe] = field(default_factory=list)

    def is_bad(self, bad_kinds: frozenset[str]) -> bool:
        return self.post is None or any(f.kind in bad_kinds for f in self.faults)


def bad_kinds_for(cfg: DataConfig) -> frozenset[str]:
    for kind in cfg.bad_faults:
        if kind not in FAULT_KINDS:
            raise InputError(f"data.bad_faults: unknown fault kind '{kind}' (known: {', '.join(FAULT_KINDS)})")
    return BAD_BY_DEFAULT | frozenset(cfg.bad_faults)


# ----------------------------------------------------------------------------------------------
# Checks of one record


class UnsafePath(Exception):
    """An image name refused before anything is opened; the message says why (one line)."""


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_image_name_chars(name: str) -> None:
    """No NUL or other control character: no file is meant by such a name, and the OS may cut it short.
    No lone surrogate either: the OS would take one for a raw byte of the name (or fail to encode it)."""
    if _CONTROL.search(name):
        raise UnsafePath(f"image name {name!r} contains a control character; refused")
    if (bad := lone_surrogate(name)) is not None:
        raise UnsafePath(f"image name {name!r} is not valid Unicode (a lone surrogate {bad}); refused")


def _inside_name(name: str) -> PurePosixPath:
    """The name as a relative path that stays inside its folder, decided on the name alone."""
    check_image_name_chars(name)
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or (pure.parts and ":" in pure.parts[0]):
        raise UnsafePath(f"'{name}' escapes the images folder; refused")
    depth = 0
    for part in pure.parts:
        depth += -1 if part == ".." else (0 if part == "." else 1)
        if depth < 0:
            raise UnsafePath(f"'{name}' escapes the images folder; refused")
    return pure


def resolve_image_path(images_dir: Path, name: str) -> Path:
    """The real path of the image `name` inside `images_dir`; UnsafePath when it would leave the folder.

    The name is checked first (no filesystem access); then symbolic links are followed (readlink only,
    nothing is opened) and the target must lie inside the folder's own real path. The real path is
    what later loads open, so a link changed after the check is not followed again.
    """
    pure = _inside_name(name)
    root = _real_folder(images_dir)
    target = Path(os.path.realpath(images_dir / pure))
    if not target.is_relative_to(root):
        raise UnsafePath(f"'{name}' is a link to a file outside the images folder; refused")
    return target


@functools.lru_cache(maxsize=64)
def _real_folder(images_dir: Path) -> Path:
    """The images folder's real path, resolved once per folder rather than once per image."""
    return Path(os.path.realpath(images_dir))


_ImageResult = tuple[list[Path] | None, list[Fault], list[ImageProbe]]


def _process_context() -> multiprocessing.context.BaseContext:
    # forkserver, not fork: forking a process that runs threads (progress bars, torch) can deadlock.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


@dataclass(frozen=True)
class ImageChecks:
    """The image checks of one record; a small picklable callable, so worker processes can run it."""

    images_dir: Path
    max_pixels: int
    max_bytes: int
    max_aspect: float
    hashes: bool

    def __call__(self, record: Record) -> _ImageResult:
        if not record.images:
            why = "no image field" if not record.has_image_field else "no image given"
            return [], [Fault(record.id, MISSING_IMAGE, why)], []
        paths: list[Path] = []
        for name in record.images:
            try:
                paths.append(resolve_image_path(self.images_dir, name))
            except UnsafePath as refused:
                return None, [Fault(record.id, UNSAFE_PATH, str(refused))], []
        faults: list[Fault] = []
        probes: list[ImageProbe] = []
        for name, path in zip(record.images, paths):
            try:
                probe = probe_image(path, max_pixels=self.max_pixels, hashes=self.hashes, max_bytes=self.max_bytes,
                                    name=name)
            except FileNotFoundError:
                faults.append(Fault(record.id, MISSING_IMAGE, f"'{name}' not found in {self.images_dir}"))
                continue
            except (ImageError, OSError) as exc:
                faults.append(Fault(record.id, UNREADABLE_IMAGE, f"'{name}': {exc}"))
                continue
            probes.append(probe)
            faults += self._probe_faults(record.id, name, probe)
        return paths, faults, probes

    def _probe_faults(self, post_id: str, name: str, probe: ImageProbe) -> list[Fault]:
        faults = []
        if probe.format_mismatch:
            detail = f"'{name}' is {probe.format} data behind a {probe.name_format} name; loaded by content"
            faults.append(Fault(post_id, FORMAT_MISMATCH, detail))
        if probe.aspect > self.max_aspect:
            ratio = f"{probe.aspect:.1f}:1 > {self.max_aspect:g}:1"
            faults.append(Fault(post_id, EXTREME_ASPECT, f"'{name}' is {probe.width}x{probe.height} ({ratio})"))
        return faults


class RecordChecker:
    """Turns records into CheckedPosts; keeps the state that spans records (ids seen)."""

    def __init__(
        self,
        cfg: DataConfig,
        images_dir: Path | None,
        labels: list[str] | None = None,
        require_label: bool = False,
        hashes: bool = False,
    ) -> None:
        self.cfg = cfg
        self.images_dir = images_dir if images_dir is not None else Path(".")
        self.labels = set(labels) if labels is not None else None
        self.require_label = require_label
        self.hashes = hashes
        self._first_row: dict[str, int] = {}

    def check_all(self, records: Iterable[Record]) -> Iterator[CheckedPost]:
        """Check records in file order. Images of the first chunk are probed in threads; a larger
        file continues in worker processes, two chunks in flight, because probing is CPU-bound
        Python + PIL work that threads cannot spread over several cores (the GIL)."""
        records = iter(records)
        image = self.cfg.image
        probe = ImageChecks(self.images_dir, image.max_pixels, image.max_bytes, image.max_aspect, self.hashes)
        first = list(islice(records, _CHUNK))
        with ThreadPoolExecutor(max_workers=_PROBE_THREADS) as threads:
            yield from self._finish_chunk(first, threads.map(probe, first))
        if len(first) < _CHUNK:
            return
        pool = ProcessPoolExecutor(max_workers=os.cpu_count() or 2, mp_context=_process_context())
        try:
            pending: deque[tuple[list[Record], Iterator[_ImageResult]]] = deque()

            def submit() -> None:
                if chunk := list(islice(records, _CHUNK)):
                    pending.append((chunk, pool.map(probe, chunk, chunksize=32)))

            submit()
            submit()
            while pending:
                chunk, probed = pending.popleft()
                submit()
                yield from self._finish_chunk(chunk, probed)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _finish_chunk(self, chunk: list[Record], probed: Iterable[_ImageResult]) -> Iterator[CheckedPost]:
        for record, (paths, image_faults, probes) in zip(chunk, probed):
            yield self._finish(record, paths, image_faults, probes)

    def _finish(
        self, record: Record, paths: list[Path] | None, image_faults: list[Fault], probes: list[ImageProbe]
    ) -> CheckedPost:
        faults = [*self._record_faults(record), *image_faults]
        post = None
        if paths is not None:
            post = Post(id=record.id, images=tuple(paths), text=record.text, extra=record.extra, label=record.label)
        return CheckedPost(record=record, post=post, faults=faults, probes=probes)

    def _record_faults(self, record: Record) -> list[Fault]:
        faults: list[Fault] = []
        first_row = self._first_row.setdefault(record.id, record.row)
        if first_row != record.row:
            faults.append(Fault(record.id, DUPLICATE_ID, f"row {record.row} repeats the id of row {first_row}"))
        faults += self._label_faults(record)
        if record.text_problem is not None:
            faults.append(Fault(record.id, INVALID_UNICODE, record.text_problem))
        faults += self._text_faults(record)
        if len(record.images) > 1:
            faults.append(Fault(record.id, MULTIPLE_IMAGES, f"{len(record.images)} images"))
        return faults

    def _label_faults(self, record: Record) -> list[Fault]:
        if record.label_problem is not None:
            return [Fault(record.id, BAD_LABEL, record.label_problem)]
        if record.label is None:
            return [Fault(record.id, UNKNOWN_LABEL, "no label")] if self.require_label else []
        if self.labels is not None and record.label not in self.labels:
            return [Fault(record.id, UNKNOWN_LABEL, f"'{record.label}' is not in data.labels")]
        return []

    def _text_faults(self, record: Record) -> list[Fault]:
        text = record.text.strip()
        if not text:
            return [Fault(record.id, EMPTY_TEXT, "empty caption")]
        if is_emoji_only(text):
            return [Fault(record.id, EMOJI_ONLY_TEXT, f"caption is only emoji: {text[:40]}")]
        words, budget = word_count(text), self.cfg.text.max_words
        if words > budget:
            policy = self.cfg.text.truncation
            return [Fault(record.id, LONG_TEXT,
                          f"{words} words > data.text.max_words={budget}; truncated ({policy})")]
        return []


# ----------------------------------------------------------------------------------------------
# Loading


@dataclass
class LoadedData:
    """The usable posts of one file, every fault found, and the ids that were skipped."""

    path: Path
    posts: list[Post]
    faults: list[Fault]
    skipped: dict[str, str]
    n_rows: int
    examples: dict[str, str] = field(default_factory=dict)  # fault kind -> the first skipped post's detail
    rows: list[int] = field(default_factory=list)  # each usable post's row in the file (Record.row), as `posts`

    def skip_summary(self, max_ids: int = 30) -> str:
        ids = list(self.skipped)
        shown = ", ".join(ids[:max_ids]) + (f" ... and {len(ids) - max_ids} more" if len(ids) > max_ids else "")
        return f"{self.path}: skipped {len(ids)} of {self.n_rows} posts: {self._reasons()}; ids {shown}"

    def _reasons(self) -> str:
        """Each fault kind that made posts skipped, most frequent first, with its first example."""
        kinds = Counter(self.skipped.values())
        return ", ".join(f"{kind} {count} [e.g. {self.examples[kind]}]" for kind, count in kinds.most_common())

    def require_posts(self, key: str | None = None) -> list[Post]:
        """The usable posts; none at all is an InputError naming the file (and its config `key`) and why."""
        if self.posts:
            return self.posts
        what = f"{key} ({self.path})" if key else str(self.path)
        if self.n_rows == 0:
            raise InputError(f"{what}: the file holds no posts")
        raise InputError(f"{what}: no usable post, all {self.n_rows} skipped: {self._reasons()}")


def load_posts(
    path: str | Path,
    images_dir: str | Path | None,
    cfg: DataConfig,
    labels: list[str] | None = None,
    require_label: bool = False,
) -> LoadedData:
    """Read and check a data file. `on_bad_row=error` stops at the first bad post with InputError."""
    path = Path(path)
    bad = bad_kinds_for(cfg)
    if images_dir and not Path(images_dir).is_dir():
        state = "is not a folder" if Path(images_dir).exists() else "not found"
        raise InputError(f"{images_dir}: the images folder of {path} {state}")
    checker = RecordChecker(cfg, Path(images_dir) if images_dir else None, labels, require_label)
    loaded = LoadedData(path=path, posts=[], faults=[], skipped={}, n_rows=0)
    for checked in checker.check_all(iter_records(path, cfg.columns, cfg.format)):
        loaded.n_rows += 1
        loaded.faults += checked.faults
        if not checked.is_bad(bad):
            loaded.posts.append(checked.post)  # type: ignore[arg-type]
            loaded.rows.append(checked.record.row)
            continue
        first = next(f for f in checked.faults if f.kind in bad or f.kind == UNSAFE_PATH)
        if cfg.on_bad_row == "error":
            raise InputError(f"{path}: post '{first.id}' (row {checked.record.row}): {first.kind}: {first.detail}")
        # A duplicate id keeps its first post; later ones are the ones skipped.
        loaded.skipped.setdefault(
            first.id if first.kind != DUPLICATE_ID else f"{first.id}#row{checked.record.row}", first.kind)
        loaded.examples.setdefault(first.kind, f"post '{first.id}': {first.detail}")
    if loaded.skipped and loaded.posts:  # with none left, require_posts' error says the same, alone on its line
        log.warning(loaded.skip_summary())
    return loaded
