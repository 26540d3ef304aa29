"""Micro-batching of model work: concurrent requests that miss the cache are gathered for a short
window and handled by ONE call in a scoring thread, the results fanned out to the waiting requests.

Scoring a batch costs far less per request than scoring requests one at a time (the sources and
the fusion run vectorised over the batch), so under load the service scores more requests per
second of CPU, and the batches grow exactly when the load does. A request waits at most
``window_s`` for its batch to close (less when the batch fills up), then for a free scoring thread.

Admission stays with the :class:`~shopfusion.serving.gate.ModelGate`: a request that would queue
beyond its bound is refused (503) before it joins a batch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from shopfusion.serving.gate import ModelGate

R = TypeVar("R")
T = TypeVar("T")

#: Handles a batch: one result per request, in order; an exception in a slot fails that request only.
BatchFn = Callable[[Sequence[R]], Sequence[T | Exception]]


class MicroBatcher(Generic[R, T]):
    def __init__(self, process: BatchFn[R, T], gate: ModelGate, window_s: float, max_batch: int) -> None:
        if max_batch < 1 or window_s < 0:
            raise ValueError("max_batch must be at least 1 and window_s at least 0")
        self.process, self.gate = process, gate
        self.window_s, self.max_batch = window_s, max_batch
        self.batches = 0  # how many batches were handled (tests and the stats page read it)
        self.requests = 0
        self._open: list[tuple[R, asyncio.Future[T]]] = []
        self._opened_at = 0.0  # time.monotonic() of the open batch's first request
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()  # strong references until done

    async def submit(self, request: R) -> T:
        """The result of ``request``, handled in a batch; 503 at once when the model is full."""
        with self.gate.admit():
            loop = asyncio.get_running_loop()
            future: asyncio.Future[T] = loop.create_future()
            if not self._open:
                self._opened_at = time.monotonic()
            self._open.append((request, future))
            if len(self._open) >= self.max_batch:
                self._flush()
            elif self._timer is None:
                self._timer = loop.call_later(self.window_s, self._flush)
            return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._open = self._open, []
        if batch:
            task = asyncio.get_running_loop().create_task(self._run(batch, self._opened_at))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[tuple[R, asyncio.Future[T]]], opened_at: float) -> None:
        requests = [request for request, _ in batch]
        results: Sequence[T | Exception]
        try:
            # The oldest request's wait, batching window included, is what the shedder holds down.
            results = await self.gate.in_thread(self.process, requests, queued_at=opened_at)
            if len(results) != len(batch):
                raise RuntimeError(f"batch function returned {len(results)} results for {len(batch)}")
        except Exception as exc:  # the call as a whole failed: every request in it fails alike
            results = [exc] * len(batch)
        self.batches += 1
        self.requests += len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # the client went away meanwhile
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
