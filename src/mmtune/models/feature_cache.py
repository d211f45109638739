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
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from mmtune.data.textfile import file_digest as regular_file_digest

log = logging.getLogger(__name__)

_SHARD_GLOB = "shard-*.safetensors"
# Why a delay: a bar for a second of work is noise; tqdm shows it only once this many seconds passed.
_PROGRESS_DELAY_S = 3.0


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


class FeatureStore:
    """The features of one namespace: in memory, mirrored to shards in `folder` (None: memory only)."""

    def __init__(self, folder: Path | None, identity: str, signature: Mapping[str, Any]) -> None:
        self.folder = folder
        self.identity = identity
        self.signature = dict(signature)
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
        first_position: dict[str, int] = {}
        for position, key in enumerate(keys):
            if key not in self._features:
                first_position.setdefault(key, position)
        missing = list(first_position.items())
        if missing:
            log.info(f"{desc}: computing {len(missing)} of {len(keys)} ({self.identity})")
        with tqdm(total=len(missing), desc=desc, unit="item", disable=not progress or not missing,
                  delay=_PROGRESS_DELAY_S) as bar:
            for start in range(0, len(missing), max(1, batch_size)):
                chunk = missing[start:start + max(1, batch_size)]
                values = compute_fn([position for _, position in chunk])
                self._add([key for key, _ in chunk], values)
                bar.update(len(chunk))
        return [self._features[key] for key in keys]

    # -- storage --------------------------------------------------------------------------------

    def _add(self, keys: list[str], values: torch.Tensor) -> None:
        if values.ndim != 2 or values.shape[0] != len(keys):
            raise ValueError(f"feature computation returned shape {tuple(values.shape)} for {len(keys)} items")
        values = values.detach().to("cpu", torch.float32).contiguous()
        if self._features:
            dim = next(iter(self._features.values())).shape[0]
            if values.shape[1] != dim:
                raise ValueError(f"feature size changed from {dim} to {values.shape[1]} in one namespace")
        if self.folder is not None:
            self._write_shard(keys, values)
        for key, row in zip(keys, values):
            self._features[key] = row

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

    def __init__(self, root: Path | str | None) -> None:
        self.root = Path(root).expanduser() if root is not None else None
        self._stores: dict[str, FeatureStore] = {}

    def namespace(self, identity: str, signature: Mapping[str, Any]) -> FeatureStore:
        ident = namespace_id(identity, signature)
        store = self._stores.get(ident)
        if store is None:
            folder = self.root / f"{_slug(identity)}-{ident}" if self.root is not None else None
            store = self._stores[ident] = FeatureStore(folder, identity, signature)
        return store


def _slug(identity: str) -> str:
    """A readable folder-name prefix: `pypi_<name>`, or the last path part of the model folder or id."""
    head = identity.split("|")[0]
    if head.startswith("pypi:"):
        tail = "pypi_" + re.split(r"[:@]", head[5:])[0]
    else:
        tail = head.split("@")[0].rstrip("/").replace("\\", "/").split("/")[-1]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", tail)[:40] or "tower"
