"""Dynamic batching: requests that arrive close together share one forward pass.

An asyncio queue and one worker task. The worker takes the first waiting request, then gathers more until the
batch holds `max_batch` posts or `max_wait_ms` has passed since it took the first, and runs the model on all
of them in a thread (the event loop keeps accepting and answering requests meanwhile). A request's posts stay
together; one bigger than `max_batch` runs alone (the predictor splits it into chunks).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from mmtune.data.post import Post

Run = Callable[[Sequence[Post]], np.ndarray]


@dataclass
class _Job:
    posts: list[Post]
    done: asyncio.Future
    release: Callable[[], None] | None = None  # called once its batch has run: what the posts' images need


@dataclass
class BatchStats:
    forwards: int = 0
    posts: int = 0
    busy_s: float = 0.0  # seconds the model ran: over the wall time, how busy the service keeps it
    sizes: list[int] = field(default_factory=list)  # posts per forward, the most recent last (bounded)


class Batcher:
    def __init__(self, run: Run, max_batch: int = 32, max_wait_ms: float = 10.0) -> None:
        self.run = run
        self.max_batch = max(1, max_batch)
        self.max_wait = max(0.0, max_wait_ms) / 1000
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Job] | None = None
        self._worker: asyncio.Task | None = None
        self._carry: _Job | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._work())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    async def submit(self, posts: list[Post], release: Callable[[], None] | None = None) -> np.ndarray:
        """The posts' probabilities, computed in whichever batch they join. `release` runs once that batch has
        run (or failed), also when the caller stopped waiting: the posts' files stay open while the model reads."""
        if self._queue is None:
            raise RuntimeError("the batcher is not started")
        job = _Job(posts, asyncio.get_running_loop().create_future(), release)
        self._queue.put_nowait(job)
        return await job.done

    async def _work(self) -> None:
        while True:
            jobs = await self._gather()
            started = time.perf_counter()
            try:
                probs = await asyncio.to_thread(self.run, [post for job in jobs for post in job.posts])
            except Exception as exc:  # why: one failing batch answers its requests with the error, the worker lives
                for job in jobs:
                    if not job.done.done():
                        job.done.set_exception(exc)
                continue
            finally:
                self.stats.busy_s += time.perf_counter() - started
                for job in jobs:
                    if job.release is not None:
                        job.release()
            self._record(len(probs))
            start = 0
            for job in jobs:
                if not job.done.done():  # a client that went away cancelled its future
                    job.done.set_result(probs[start:start + len(job.posts)])
                start += len(job.posts)

    async def _gather(self) -> list[_Job]:
        assert self._queue is not None
        first = self._carry or await self._queue.get()
        self._carry = None
        jobs, size = [first], len(first.posts)
        deadline = time.monotonic() + self.max_wait
        while size < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                job = self._queue.get_nowait() if remaining <= 0 else await asyncio.wait_for(self._queue.get(),
                                                                                              remaining)
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                break
            if size + len(job.posts) > self.max_batch:
                self._carry = job  # it opens the next batch
                break
            jobs.append(job)
            size += len(job.posts)
        return jobs

    def _record(self, size: int) -> None:
        self.stats.forwards += 1
        self.stats.posts += size
        self.stats.sizes = [*self.stats.sizes[-999:], size]
