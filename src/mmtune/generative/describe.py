"""Text read from the images: a generative VLM answers one prompt per image (greedy), for `mmtune describe`.

Answers are cached per (image content, model, prompt, generation settings) in `cache_dir/<namespace>/`: each
generate batch adds one `shard-*.json`, written to a temporary file and renamed, so a killed run loses at most
the batch in flight and the next run generates only what is missing (with nothing missing, the model is not even
loaded). Under a launcher (accelerate / torchrun) the posts still to describe are split between the processes,
each process writes its own shards, and the answers are gathered on every process.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from mmtune.config import Config, FreezeConfig, LoraConfig
from mmtune.data.images import ImageError
from mmtune.data.post import Post
from mmtune.errors import InputError
from mmtune.files import read_regular
from mmtune.generative.describe_request import JOIN, DescribeRequest
from mmtune.models.feature_cache import file_digest, namespace_id
from mmtune.models.image_pipeline import ImagePipeline
from mmtune.models.internvl_chat.cache import native_checkpoint
from mmtune.models.towers import checkpoint_stamp
from mmtune.models.vlm_inputs import image_budget_kwargs
from mmtune.models.vlm_loading import LoadedVlm, load_vlm
from mmtune.outputs import write_text_atomic
from mmtune.progress import progress

log = logging.getLogger(__name__)

# ---- cache -----------------------------------------------------------------------------------------------------


def cache_identity(cfg: Config, request: DescribeRequest) -> tuple[str, dict[str, Any]]:
    """What an answer depends on besides the image: the checkpoint (its files' stamp) and every setting that
    changes the tokens the model sees or generates."""
    if not cfg.model.name:
        raise InputError("--model / model.name: the VLM that reads the images (a Hub id or a folder)")
    vlm = cfg.model.vlm
    settings = {"prompt": request.prompt, "max_new_tokens": request.max_new_tokens, "decoding": "greedy",
                "image_size": vlm.image_size, "max_tiles": vlm.max_tiles, "max_pixels": vlm.max_pixels,
                "chat_template": vlm.chat_template, "dtype": vlm.dtype, "quantize": cfg.model.quantize}
    return checkpoint_stamp(native_checkpoint(cfg.model.name)), settings


class AnswerCache:
    """Answers by image key in `root/<namespace>/shard-*.json`; unreadable shards are skipped (recomputed)."""

    def __init__(self, root: Path, identity: str, settings: dict[str, Any]) -> None:
        self.folder = root / namespace_id(identity, settings)
        self.identity, self.settings = identity, settings
        self.answers: dict[str, str] = {}
        self.bad_shards = 0
        if self.folder.is_dir():
            for shard in sorted(self.folder.glob("shard-*.json")):
                self._read(shard)
        if self.bad_shards:
            log.warning(f"{self.folder}: {self.bad_shards} unreadable cache shards skipped (their images are "
                        "described again)")

    def _read(self, shard: Path) -> None:
        try:
            answers = json.loads(read_regular(shard).decode("utf-8"))["answers"]  # a FIFO is never opened
        except (OSError, ValueError, KeyError, TypeError):
            answers = None
        if not isinstance(answers, dict) or not all(isinstance(v, str) for v in answers.values()):
            self.bad_shards += 1
            return
        self.answers.update(answers)

    def add(self, answers: dict[str, str]) -> None:
        """Keep `answers` (one new shard, renamed into place whole)."""
        if not answers:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            about = self.folder / "namespace.json"
            if not about.exists():
                write_text_atomic(about, json.dumps({"model": self.identity, **self.settings}, indent=1,
                                                    ensure_ascii=False))
        except OSError as error:
            raise InputError(f"describe.cache_dir: cannot write {self.folder} ({error.strerror})") from None
        write_text_atomic(self.folder / f"shard-{uuid.uuid4().hex}.json",
                          json.dumps({"answers": answers}, ensure_ascii=False))
        self.answers.update(answers)


# ---- the model -------------------------------------------------------------------------------------------------


class Describer:
    """The VLM, loaded frozen for inference, answering `request.prompt` for a batch of images."""

    def __init__(self, cfg: Config, request: DescribeRequest, device: torch.device) -> None:
        # Frozen: weights_dtype then loads half precision on a GPU (fp32 on CPU); nothing here trains.
        model_cfg = replace(cfg.model, lora=LoraConfig(), freeze=FreezeConfig(preset="all"),
                            gradient_checkpointing=False)
        self.loaded: LoadedVlm = load_vlm(model_cfg)
        if not self.loaded.has_vision:
            raise InputError(f"model.name: {cfg.model.name} is a text-only language model; describe needs a VLM")
        self.model = self.loaded.model.eval()
        if cfg.model.quantize == "none":
            self.model.to(device)
        self.device = device
        self.request = request
        self.images = ImagePipeline(cfg.data.image, fit="within", side=cfg.model.vlm.image_size)
        self.image_kwargs = image_budget_kwargs(self.loaded, cfg.model.vlm)
        template = cfg.model.vlm.chat_template or getattr(self.loaded.processor, "chat_template", None) \
            or self.loaded.tokenizer.chat_template
        if not template:
            raise InputError(f"model.vlm.chat_template: {cfg.model.name} ships no chat template; give one")
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": request.prompt}]}]
        try:
            self.text = self.loaded.tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                                                  add_generation_prompt=True)
        except Exception as error:  # jinja2 raises its own TemplateError family
            raise InputError(f"model.vlm.chat_template: cannot render the prompt ({error})") from None

    def answer(self, paths: Sequence[Path]) -> list[str]:
        images = [self._load(path) for path in paths]
        batch_images: Any = [[image] for image in images] if self.loaded.family.nested_images else images
        inputs = self.loaded.processor(text=[self.text] * len(images), images=batch_images, padding=True,
                                       return_tensors="pt", **self.image_kwargs)
        # The pixels in the weights' precision (bf16 on a GPU); a quantized model reports its compute dtype here.
        inputs = {k: v.to(self.device, self.model.dtype) if torch.is_floating_point(v) else v.to(self.device)
                  for k, v in inputs.items()}
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.request.max_new_tokens, do_sample=False,
                                      num_beams=1, use_cache=True, pad_token_id=self.loaded.tokenizer.pad_token_id)
        new = out[:, inputs["input_ids"].shape[1]:]
        # Stopped by max_new_tokens inside a character, a byte-level answer ends in U+FFFD: that half is dropped.
        return [text.rstrip("\ufffd").strip() for text in self.loaded.tokenizer.batch_decode(
            new, skip_special_tokens=True)]

    def _load(self, path: Path) -> Any:
        try:
            return self.images.load(path)
        except (ImageError, OSError) as error:
            raise InputError(f"{path}: unreadable image ({error})") from None


# ---- the pass over the posts -----------------------------------------------------------------------------------


@dataclass
class DescribeStats:
    posts: int = 0
    images: int = 0  # distinct images (by content) of the posts
    generated: int = 0  # of them answered by the model in this run (on every process together)
    seconds: float = 0.0
    no_image: int = 0  # posts without images: their field is empty
    per_process: list[int] = field(default_factory=list)  # images each process answered


def describe_posts(posts: Sequence[Post], request: DescribeRequest, cache: AnswerCache,
                   make_describer: Callable[[], Describer], state: Any) -> tuple[list[str], DescribeStats]:
    """Each post's text (its images' answers in image order, joined by JOIN); `state`: Accelerate's PartialState."""
    started = time.monotonic()
    keys = [[file_digest(path) for path in post.images] for post in posts]  # by content: renames still hit
    paths = {key: path for post, post_keys in zip(posts, keys) for key, path in zip(post_keys, post.images)}
    stats = DescribeStats(posts=len(posts), images=len(paths), no_image=sum(not k for k in keys))
    # Every process lists the same work: none adds to the cache before all have read it.
    state.wait_for_everyone()
    todo = [index for index, post_keys in enumerate(keys) if any(k not in cache.answers for k in post_keys)]
    if todo:
        with state.split_between_processes(todo) as mine:
            local = _describe_share([keys[i] for i in mine], paths, request, cache, make_describer,
                                    state.is_main_process)
        from accelerate.utils import gather_object

        shares = gather_object([local])
        for share in shares:
            cache.answers.update(share)
        stats.per_process = [len(share) for share in shares]
        stats.generated = sum(stats.per_process)
    # An image with nothing to read adds no empty line.
    texts = [JOIN.join(answer for key in post_keys if (answer := cache.answers[key])) for post_keys in keys]
    stats.seconds = time.monotonic() - started
    return texts, stats


def _describe_share(post_keys: list[list[str]], paths: dict[str, Path], request: DescribeRequest,
                    cache: AnswerCache, make_describer: Callable[[], Describer], main: bool) -> dict[str, str]:
    """This process's posts: their missing images answered in batches, the progress counted in posts."""
    queue = list(dict.fromkeys(k for keys in post_keys for k in keys if k not in cache.answers))
    waiting: dict[str, list[int]] = {}
    for post, keys in enumerate(post_keys):
        for key in set(keys) & set(queue):
            waiting.setdefault(key, []).append(post)
    remaining = [len(set(keys) & set(queue)) for keys in post_keys]
    answered: dict[str, str] = {}
    describer = make_describer() if queue else None
    with progress(len(post_keys), "describing", unit="post", disable=not main) as bar:
        bar.update(sum(n == 0 for n in remaining))
        for batch in _chunks(queue, request.batch_size):
            answers = dict(zip(batch, describer.answer([paths[key] for key in batch])))  # type: ignore[union-attr]
            cache.add(answers)
            answered |= answers
            finished = 0
            for key in batch:
                for post in waiting[key]:
                    remaining[post] -= 1
                    finished += remaining[post] == 0
            bar.update(finished)
    return answered


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
