"""On-disk cache of frozen-encoder outputs, so that a frozen tower runs once per post, not once per epoch.

Layout: `root/<slug>-<hash>/` per namespace, where the hash covers the tower identity (model folder
or id, weights fingerprint, pooling, quantization, ...) and the preprocessing signature (max length,
image size, resize policy, normalisation, ...): change either and the features land elsewhere, so a
stale feature is never read. Inside, `namespace.json` says what it holds (for people), and
`shard-*.safetensors` files hold the features: one [n, dim] float32 tensor plus its n content keys in
the metadata. Each computation batch appends one shard, written to a temporary file and
`os.replace`d, so an interrupted run loses at most the batch in flight and never leaves a torn shard.
Shards are read into memory when a namespace is first opened.

Keys are content hashes: sha256 of the prepared text (`text_key`), or of the post's image list
with each image's file bytes (`image_key`), so renaming a data file or reordering posts keeps hits.

Time budget: inside `extraction_budget(budget)` every encoding pass checks the budget between batches and
raises `ExtractionStopped` when the next batch would not fit; the shards written so far stay, so the next
run (`--resume`) computes only the rest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mmtune.data.textfile import file_digest as regular_file_digest
from mmtune.progress import progress as progress_bar

log = logging.getLogger(__name__)

_SHARD_GLOB = "shard-*.safetensors"
# Why a delay: a bar for a second of work is noise; tqdm shows it only once this many seconds passed.
_PROGRESS_DELAY_S = 3.0
# Under a time budget, the first batch of each namespace: it measures the encoder's time per item.
_PROBE_BATCH = 4


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_digest(path: Path) -> str:
    """sha256 of a regular file's bytes, or a marker for a missing/unreadable one or a FIFO/device (never read
    whole: it could block or never end); the marker still gives a stable key."""
    return regular_file_digest(path) or f"unreadable:{Path(path).name}"


def image_key(digests: Iterable[str]) -> str:
    """Key of one post's images (in order) from the per-image digests of `file_digest`."""
    return hashlib.sha256("\n".join(digests).encode("utf-8")).hexdigest()


def namespace_id(identity: str, signature: Mapping[str, Any]) -> str:
    blob = json.dumps({"identity": identity, "signature": dict(signature)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:24]


class ExtractionStopped(Exception):
    """The time budget ran out during an encoding pass: `done` of `total` missing features were computed
    (and kept in `folder`, when the cache is on disk) before it stopped."""

    def __init__(self, desc: str, done: int, total: int, folder: Path | None) -> None:
        super().__init__(f"{desc}: stopped by the time budget after {done} of {total}")
        self.desc, self.done, self.total, self.folder = desc, done, total, folder


class Budget(Protocol):
    """What an encoding pass reads of the run's time budget (training/budget.py's TimeBudget)."""

    seconds: float | None

    def elapsed(self) -> float: ...


class _Extraction:
    """The budget of the encoding passes in one `extraction_budget` block, timed per item and per namespace.

    A namespace's first batch is small (`_PROBE_BATCH` items): its time per item is unknown until then, and a
    full batch of a large encoder on a slow machine could alone run past the budget.
    """

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.per_item: dict[str, float] = {}  # seconds per item of the latest batch, by namespace
        self.batches = 0

    def batch_size(self, namespace: str, wanted: int) -> int:
        return wanted if namespace in self.per_item else min(wanted, _PROBE_BATCH)

    def should_stop(self, namespace: str, size: int) -> bool:
        # At least one batch per block: a budget shorter than the start-up still moves a resumed run forward.
        if not self.batches:
            return False
        per_item = self.per_item.get(namespace, max(self.per_item.values(), default=0.0))
        # Twice the expected batch, as the training loop keeps twice its slowest step: a batch's time varies.
        return self.budget.elapsed() + 2 * per_item * size >= self.budget.seconds

    def record(self, namespace: str, size: int, seconds: float) -> None:
        self.batches += 1
        # The latest batch, not the slowest: the small first one carries the encoder's fixed cost on few items.
        self.per_item[namespace] = seconds / max(1, size)


_ACTIVE: ContextVar[_Extraction | None] = ContextVar("mmtune_extraction_budget", default=None)


@contextmanager
def extraction_budget(budget: Budget | None) -> Iterator[None]:
    """Within the block, encoding passes stop (ExtractionStopped) before a batch that would end past `budget`."""
    token = _ACTIVE.set(_Extraction(budget) if budget is not None and budget.seconds is not None else None)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


# Rows a memory-only namespace keeps (about 75-250 MB at 384-1280 floats a row): far above a competition's posts,
# so training never recomputes, while a service's memory stays bounded.
MEMORY_ONLY_ROWS = 50_000


class FeatureStore:
    """The features of one namespace: in memory, mirrored to shards in `folder` (None: memory only).

    `memory_limit`: the most rows a memory-only store keeps, oldest dropped first. A long-running service sees
    a new caption in nearly every request and would otherwise grow without end; a dropped row is recomputed."""

    def __init__(self, folder: Path | None, identity: str, signature: Mapping[str, Any],
                 memory_limit: int | None = None) -> None:
        self.folder = folder
        self.identity = identity
        self.signature = dict(signature)
        self.memory_limit = memory_limit if folder is None else None
        self._features: dict[str, torch.Tensor] = {}
        if folder is not None:
            self._open(folder)

    def __len__(self) -> int:
        return len(self._features)

    def __contains__(self, key: str) -> bool:
        return key in self._features

    def get_or_compute(
        self,
        keys: Sequence[str],
        compute_fn: Callable[[list[int]], torch.Tensor],
        batch_size: int = 32,
        progress: bool = True,
        desc: str = "features",
    ) -> list[torch.Tensor]:
        """One feature vector per key, computing only the missing ones.

        `compute_fn(positions)` gets positions into `keys` (one per missing key, duplicates computed
        once) and returns their features as [len(positions), dim].
        """
        return self.get_or_stream(keys, lambda chunks: (compute_fn(chunk) for chunk in chunks), batch_size,
                                  progress, desc)

    def get_or_stream(
        self,
        keys: Sequence[str],
        stream: Callable[[list[list[int]]], Iterator[torch.Tensor]],
        batch_size: int = 32,
        progress: bool = True,
        desc: str = "features",
    ) -> list[torch.Tensor]:
        """`get_or_compute` for encoders that work ahead: `stream(chunks)` gets every planned batch of positions
        at once and yields their features batch by batch, in order (it may prepare later batches while earlier
        ones are stored). Each batch is stored (one shard) before the next is asked for; the iterator is closed
        when the time budget stops the pass."""
        first_position: dict[str, int] = {}
        # Every row this call returns, held here: a bounded store may drop early rows while later ones arrive.
        rows: dict[str, torch.Tensor] = {}
        for position, key in enumerate(keys):
            if key in self._features:
                rows[key] = self._features[key]
            else:
                first_position.setdefault(key, position)
        missing = list(first_position.items())
        if missing:
            log.info(f"{desc}: computing {len(missing)} of {len(keys)} ({self.identity})")
        extraction = _ACTIVE.get()
        namespace = namespace_id(self.identity, self.signature)
        chunks = _plan(len(missing), max(1, batch_size), extraction.batch_size(namespace, batch_size)
                       if extraction is not None else batch_size)
        if not chunks:
            return [rows[key] for key in keys]
        batches = stream([[position for _, position in missing[a:b]] for a, b in chunks])
        with progress_bar(len(missing), desc, unit="item", disable=not progress,
                          delay=_PROGRESS_DELAY_S) as bar, _closing(batches):
            for start, end in chunks:
                if extraction is not None and extraction.should_stop(namespace, end - start):
                    raise ExtractionStopped(desc, start, len(missing), self.folder)
                began = time.monotonic()
                values = next(batches, None)
                if values is None:
                    raise ValueError(f"feature computation ended after {start} of {len(missing)} items")
                rows.update(self._add([key for key, _ in missing[start:end]], values))
                bar.update(end - start)
                if extraction is not None:
                    extraction.record(namespace, end - start, time.monotonic() - began)
        return [rows[key] for key in keys]

    # -- storage --------------------------------------------------------------------------------

    def _add(self, keys: list[str], values: torch.Tensor) -> dict[str, torch.Tensor]:
        if values.ndim != 2 or values.shape[0] != len(keys):
            raise ValueError(f"feature computation returned shape {tuple(values.shape)} for {len(keys)} items")
        values = values.detach().to("cpu", torch.float32).contiguous()
        if self._features:
            dim = next(iter(self._features.values())).shape[0]
            if values.shape[1] != dim:
                raise ValueError(f"feature size changed from {dim} to {values.shape[1]} in one namespace")
        if self.folder is not None:
            self._write_shard(keys, values)
        added = dict(zip(keys, values))
        self._features.update(added)
        if self.memory_limit is not None:
            for oldest in list(self._features)[:max(0, len(self._features) - self.memory_limit)]:
                del self._features[oldest]
        return added

    def _write_shard(self, keys: list[str], values: torch.Tensor) -> None:
        name = f"shard-{os.getpid()}-{uuid.uuid4().hex[:12]}.safetensors"
        final = self.folder / name
        temp = self.folder / f".{name}.tmp"
        save_file({"features": values}, str(temp), metadata={"keys": json.dumps(keys)})
        os.replace(temp, final)

    def _open(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        info = folder / "namespace.json"
        if not info.exists():
            temp = folder / f".namespace-{uuid.uuid4().hex[:8]}.tmp"
            temp.write_text(json.dumps({"identity": self.identity, "signature": self.signature}, indent=1,
                                       sort_keys=True, default=str), encoding="utf-8")
            os.replace(temp, info)
        for shard in sorted(folder.glob(_SHARD_GLOB)):
            self._read_shard(shard)

    def _read_shard(self, shard: Path) -> None:
        try:
            with safe_open(str(shard), framework="pt") as handle:
                keys = json.loads((handle.metadata() or {})["keys"])
                values = handle.get_tensor("features")
        except Exception as exc:  # a damaged shard only costs a recomputation, never the run
            log.warning(f"feature cache: skipping unreadable shard {shard} ({exc})")
            return
        for key, row in zip(keys, values):
            self._features[key] = row


class FeatureCache:
    """Feature stores by (tower identity, preprocessing signature) under `root` (None: memory only)."""

    def __init__(self, root: Path | str | None, memory_limit: int | None = MEMORY_ONLY_ROWS) -> None:
        self.root = Path(root).expanduser() if root is not None else None
        self.memory_limit = memory_limit
        self._stores: dict[str, FeatureStore] = {}

    def namespace(self, identity: str, signature: Mapping[str, Any]) -> FeatureStore:
        ident = namespace_id(identity, signature)
        store = self._stores.get(ident)
        if store is None:
            folder = self.root / f"{_slug(identity)}-{ident}" if self.root is not None else None
            store = self._stores[ident] = FeatureStore(folder, identity, signature, self.memory_limit)
        return store


@contextmanager
def _closing(batches: Iterator[torch.Tensor]) -> Iterator[None]:
    """Close a generator of batches (and what it holds: worker processes) however the pass ends."""
    try:
        yield
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def _plan(total: int, size: int, first: int) -> list[tuple[int, int]]:
    """[start, end) of each batch of `total` items: the first of `first` items (a budget's probe), then `size`."""
    bounds, start = [], 0
    while start < total:
        end = min(total, start + (max(1, first) if start == 0 else size))
        bounds.append((start, end))
        start = end
    return bounds


def _slug(identity: str) -> str:
    """A readable folder-name prefix: `pypi_<name>`, or the last path part of the model folder or id."""
    head = identity.split("|")[0]
    if head.startswith("pypi:"):
        tail = "pypi_" + re.split(r"[:@]", head[5:])[0]
    else:
        tail = head.split("@")[0].rstrip("/").replace("\\", "/").split("/")[-1]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", tail)[:40] or "tower"
