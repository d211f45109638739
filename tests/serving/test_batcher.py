"""The dynamic batcher and the in-memory request images, without a model or a server."""

from __future__ import annotations

import asyncio
import os
import time

import numpy as np
import pytest

from mmtune.data.post import Post
from mmtune.serving.batcher import Batcher
from mmtune.serving.requests import MemoryImages


def _posts(n: int) -> list[Post]:
    return [Post(id=str(i), images=(), text=f"post {i}") for i in range(n)]


def _run(posts):
    if any(p.text == "boom" for p in posts):
        raise RuntimeError("model failed")
    return np.array([[float(p.id), 1.0] for p in posts])


def test_requests_within_the_wait_share_a_batch_up_to_its_size_and_keep_their_order():
    async def scenario():
        batcher = Batcher(_run, max_batch=5, max_wait_ms=200)
        await batcher.start()
        results = await asyncio.gather(*(batcher.submit(_posts(n)) for n in (2, 3, 4)))
        await batcher.stop()
        return batcher.stats.sizes, results

    sizes, results = asyncio.run(scenario())
    assert sizes == [5, 4]  # 2 + 3 fill the first batch; 4 would overflow it and opens the next
    assert [r[:, 0].tolist() for r in results] == [[0, 1], [0, 1, 2], [0, 1, 2, 3]]


def test_the_stats_count_the_seconds_the_model_ran():
    def slow(posts):
        time.sleep(0.1)
        return np.zeros((len(posts), 2))

    async def scenario():
        batcher = Batcher(slow, max_batch=1, max_wait_ms=0)
        await batcher.start()
        await asyncio.gather(batcher.submit(_posts(1)), batcher.submit(_posts(1)))
        await asyncio.sleep(0.2)  # idle: not counted
        await batcher.stop()
        return batcher.stats

    stats = asyncio.run(scenario())
    assert stats.forwards == 2 and 0.2 <= stats.busy_s < 0.35


def test_a_failing_batch_answers_with_its_error_releases_its_files_and_the_worker_lives():
    released = []

    async def scenario():
        batcher = Batcher(_run, max_batch=4, max_wait_ms=0)
        await batcher.start()
        with pytest.raises(RuntimeError, match="model failed"):
            await batcher.submit([Post("0", (), "boom")], release=lambda: released.append("failed"))
        ok = await batcher.submit(_posts(1), release=lambda: released.append("ok"))
        await batcher.stop()
        return ok

    assert asyncio.run(scenario()).shape == (1, 2)
    assert released == ["failed", "ok"]


def test_a_caller_that_stops_waiting_does_not_close_files_the_model_still_reads():
    events = []

    def slow(posts):
        time.sleep(0.2)
        events.append("ran")
        return np.zeros((len(posts), 2))

    async def scenario():
        batcher = Batcher(slow, max_batch=4, max_wait_ms=0)
        await batcher.start()
        task = asyncio.ensure_future(batcher.submit(_posts(1), release=lambda: events.append("released")))
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.sleep(0.4)
        await batcher.stop()

    asyncio.run(scenario())
    assert events == ["ran", "released"]


def test_request_images_are_anonymous_memory_files_closed_with_the_request():
    memory = MemoryImages()
    path = memory.add(b"\x89PNG not really")
    target = os.readlink(path)
    assert target.startswith("/memfd:")  # in memory: no file system holds it
    assert path.read_bytes() == b"\x89PNG not really"
    memory.close()
    assert not path.exists() or os.readlink(path) != target
