"""Admission control for model work: a bounded number of requests may wait for or hold a scoring
thread; past that the request is refused at once (503 with ``Retry-After``) instead of queueing.

Cache hits never pass the gate (they are answered on the event loop), so under overload the
service keeps answering hot requests fast and sheds only the work it cannot finish in time: a
queue of ``max_pending`` requests behind ``workers`` threads bounds the wait of an admitted one.
Recommendations and similar items reach the threads in micro-batches
(:mod:`shopfusion.serving.batcher`), which pass the same gate one request at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import anyio
import anyio.to_thread
from fastapi import HTTPException

from shopfusion.serving.metrics import Metrics

T = TypeVar("T")


class ModelGate:
    def __init__(self, workers: int, max_pending: int, metrics: Metrics) -> None:
        self.workers, self.max_pending, self.metrics = workers, max_pending, metrics
        self.pending = 0
        self._limiter: anyio.CapacityLimiter | None = None

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Count the request as pending while the block runs; refuse it (503) when full."""
        if self.pending >= self.max_pending:
            self.metrics.rejected.labels("model_busy").inc()
            raise HTTPException(503, "the model is at capacity; retry shortly", headers={"Retry-After": "1"})
        self.pending += 1
        try:
            yield
        finally:
            self.pending -= 1

    async def in_thread(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn`` in one of the ``workers`` scoring threads (no admission check)."""
        if self._limiter is None:  # created lazily: it belongs to the running event loop
            self._limiter = anyio.CapacityLimiter(self.workers)
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Admit one request and run ``fn`` for it in a scoring thread."""
        with self.admit():
            return await self.in_thread(fn, *args)
