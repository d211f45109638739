"""The on-disk feature cache: computes only what is missing, survives runs, keeps namespaces apart."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from mmtune.models.feature_cache import FeatureCache, file_digest, image_key, namespace_id, text_key


class CountingEncoder:
    """A stand-in encoder: features [len(text), 1, 2, 3] per text, recording which positions it computed."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.calls: list[list[int]] = []

    def __call__(self, positions: list[int]) -> torch.Tensor:
        self.calls.append(list(positions))
        return torch.tensor([[float(len(self.texts[p])), 1.0, 2.0, 3.0] for p in positions])

    @property
    def computed(self) -> int:
        return sum(len(c) for c in self.calls)


def _get(cache: FeatureCache, texts: list[str], signature: dict | None = None,
         batch_size: int = 2) -> tuple[list[torch.Tensor], CountingEncoder]:
    encoder = CountingEncoder(texts)
    store = cache.namespace("tiny-model|pool=mean", signature or {"max_length": 16})
    values = store.get_or_compute([text_key(t) for t in texts], encoder, batch_size=batch_size, progress=False)
    return values, encoder


def test_computes_only_missing_keys_and_duplicates_once(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    values, encoder = _get(cache, ["a", "bb", "a", "ccc"])
    assert encoder.computed == 3  # "a" twice in one call: computed once
    assert [v[0].item() for v in values] == [1.0, 2.0, 1.0, 3.0]
    values, encoder = _get(cache, ["ccc", "dddd"])
    assert encoder.calls == [[1]]
    assert values[1][0].item() == 4.0


def test_shards_survive_a_new_cache_instance(tmp_path: Path) -> None:
    _get(FeatureCache(tmp_path), ["a", "bb", "ccc"], batch_size=2)
    [folder] = list(tmp_path.iterdir())
    shards = sorted(folder.glob("shard-*.safetensors"))
    assert len(shards) == 2  # one shard per computation batch
    assert not list(folder.glob("*.tmp")) and (folder / "namespace.json").exists()
    values, encoder = _get(FeatureCache(tmp_path), ["ccc", "a", "bb"])
    assert encoder.computed == 0
    assert [v[0].item() for v in values] == [3.0, 1.0, 2.0]


def test_namespace_changes_with_model_or_preprocessing(tmp_path: Path) -> None:
    base = namespace_id("model-a", {"max_length": 16})
    assert namespace_id("model-b", {"max_length": 16}) != base
    assert namespace_id("model-a", {"max_length": 32}) != base
    assert namespace_id("model-a", {"max_length": 16}) == base
    cache = FeatureCache(tmp_path)
    _get(cache, ["a"], {"max_length": 16})
    _, encoder = _get(cache, ["a"], {"max_length": 32})
    assert encoder.computed == 1
    assert len(list(tmp_path.iterdir())) == 2


def test_memory_only_cache_writes_nothing(tmp_path: Path) -> None:
    cache = FeatureCache(None)
    _get(cache, ["a", "b"])
    _, encoder = _get(cache, ["a", "b"])
    assert encoder.computed == 0
    assert not list(tmp_path.iterdir())


def test_a_memory_only_store_keeps_at_most_its_limit_and_still_answers_every_key() -> None:
    cache = FeatureCache(None, memory_limit=3)
    texts = ["a", "bb", "ccc", "dddd", "eeeee"]
    values, encoder = _get(cache, texts)  # more rows than the limit in one call: all answered
    assert encoder.computed == 5
    assert [v[0].item() for v in values] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert len(cache.namespace("tiny-model|pool=mean", {"max_length": 16})) == 3
    values, encoder = _get(cache, ["a", "eeeee"])  # the oldest row went first: recomputed, the newest kept
    assert encoder.calls == [[0]]
    assert [v[0].item() for v in values] == [1.0, 5.0]


def test_a_store_on_disk_keeps_every_row_whatever_the_limit(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, memory_limit=1)
    _get(cache, ["a", "bb", "ccc"])
    _, encoder = _get(cache, ["a", "bb", "ccc"])
    assert encoder.computed == 0


def test_damaged_shard_is_skipped_and_recomputed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _get(FeatureCache(tmp_path), ["a", "bb"], batch_size=1)
    [folder] = list(tmp_path.iterdir())
    first = sorted(folder.glob("shard-*.safetensors"))[0]
    first.write_bytes(b"not a safetensors file")
    with caplog.at_level(logging.WARNING):
        _, encoder = _get(FeatureCache(tmp_path), ["a", "bb"])
    assert encoder.computed == 1
    assert "unreadable shard" in caplog.text


def test_feature_size_must_not_change_within_a_namespace(tmp_path: Path) -> None:
    store = FeatureCache(tmp_path).namespace("m", {})
    store.get_or_compute(["k1"], lambda positions: torch.zeros(len(positions), 4), progress=False)
    with pytest.raises(ValueError, match="feature size"):
        store.get_or_compute(["k2"], lambda positions: torch.zeros(len(positions), 5), progress=False)
    with pytest.raises(ValueError, match="shape"):
        store.get_or_compute(["k3", "k4"], lambda positions: torch.zeros(1, 4), progress=False)


def test_image_key_follows_bytes_and_order(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.jpg", tmp_path / "b.jpg", tmp_path / "c.jpg"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    c.write_bytes(b"one")  # same bytes as a.jpg, another name
    key = image_key([file_digest(a), file_digest(b)])
    assert image_key([file_digest(c), file_digest(b)]) == key
    assert image_key([file_digest(b), file_digest(a)]) != key
    assert image_key([file_digest(a)]) != key
    assert file_digest(tmp_path / "missing.jpg").startswith("unreadable:")
