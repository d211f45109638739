"""`mmtune describe DATA --images DIR --model VLM --out OUT`: a VLM's answer about each image (the text in it, or a
caption) written into a new field of each post, in DATA's format, for `data.columns.extra_text`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from mmtune.config import Config
from mmtune.data.add_field import write_with_field
from mmtune.data.checks import load_posts
from mmtune.data.readers import FORMATS_BY_SUFFIX, detect_format
from mmtune.errors import InputError
from mmtune.generative.describe_request import resolve_request
from mmtune.outputs import check_outputs

log = logging.getLogger(__name__)

CACHE_FOLDER = ".describe-cache"


@dataclass
class DescribeResult:
    out: Path
    field: str
    posts: int  # described
    rows: int  # in the file
    skipped: int  # bad posts (counted by kind in the log), written with an empty field
    images: int
    generated: int  # images the model answered in this run; the rest came from the cache
    seconds: float
    replaced: int  # rows that already had the field


def check_describe(cfg: Config, data: Path, out: Path, config_file: Path | None = None) -> str:
    """Before any model loads: the outputs clash with no input and keep the input's format; returns the format."""
    check_outputs({"--out": out}, {"DATA": data, "--config": config_file})
    fmt = detect_format(data, cfg.data.format)
    written = FORMATS_BY_SUFFIX.get(out.suffix.lower())
    if written is not None and written != fmt:
        raise InputError(f"--out {out}: DATA is {fmt} and the output keeps its format; give a "
                         f"{'/'.join(s for s, f in FORMATS_BY_SUFFIX.items() if f == fmt)} file name")
    return fmt


def describe(cfg: Config, data: Path, images: Path | None, out: Path, config_file: Path | None = None
             ) -> DescribeResult:
    """Describe every image of every usable post of `data` and write `out` (the main process only)."""
    fmt = check_describe(cfg, data, out, config_file)
    request = resolve_request(cfg.describe, cfg.data.columns)
    loaded = load_posts(data, images, cfg.data)
    posts = loaded.require_posts("DATA")
    # torch and transformers: only once the data is known to be sound
    from mmtune.generative.describe import AnswerCache, Describer, cache_identity, describe_posts
    from mmtune.generative.trainer_setup import processes

    identity, settings = cache_identity(cfg, request)
    root = Path(cfg.describe.cache_dir).expanduser() if cfg.describe.cache_dir else out.parent / CACHE_FOLDER
    cache = AnswerCache(root, identity, settings)
    state = processes()
    texts, stats = describe_posts(posts, request, cache, lambda: Describer(cfg, request, state.device), state)
    replaced = 0
    if state.is_main_process:  # one writer
        replaced = write_with_field(data, out, fmt, cfg.data.columns, request.field, dict(zip(loaded.rows, texts)))
        if replaced:
            log.warning(f"{replaced} rows of {data} already had a '{request.field}' field: replaced")
    state.wait_for_everyone()
    if stats.no_image:
        log.warning(f"{stats.no_image} posts of {data} have no image: their '{request.field}' is empty")
    rate = stats.posts / stats.seconds if stats.seconds > 0 else float("inf")
    log.info(f"described {stats.posts} posts ({stats.images} images: {stats.generated} by the model, the rest from "
             f"{cache.folder}) in {stats.seconds:.1f} s, {rate:.3g} posts/s")
    return DescribeResult(out=out, field=request.field, posts=len(posts), rows=loaded.n_rows,
                          skipped=len(loaded.skipped), images=stats.images, generated=stats.generated,
                          seconds=stats.seconds, replaced=replaced)
