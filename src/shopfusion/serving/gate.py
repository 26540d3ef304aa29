"""Admission control for model work: a bounded number of requests may wait for or hold a scoring
thread; past that the request is refused at once (503) instead of queueing.

Cache hits never pass the gate (they are answered on the event loop), so under overload the
service keeps answering hot requests fast and sheds only the work it cannot finish in time: a
queue of ``max_pending`` behind ``workers`` threads bounds the wait to about
``max_pending / workers`` scoring times.
"""

from __future__ import annotations

from collections.abc import Callable
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

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        if self.pending >= self.max_pending:
            self.metrics.rejected.labels("model_busy").inc()
            raise HTTPException(503, "the model is at capacity; retry shortly", headers={"Retry-After": "1"})
        if self._limiter is None:  # created lazily: it belongs to the running event loop
            self._limiter = anyio.CapacityLimiter(self.workers)
        self.pending += 1
        try:
            return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)
        finally:
            self.pending -= 1
