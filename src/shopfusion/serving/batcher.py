"""Adaptive micro-batching of model work: cache misses queue, and each free scoring thread takes
everything waiting (up to ``max_batch``) in ONE call, the results fanned out to the requests.

Scoring a batch costs far less per request than scoring requests one at a time (on the Beauty
pipeline a lone request costs ~3.2 ms of CPU, a batch of 8 ~6.4 ms: most of the cost is per call,
not per request). Batches are formed by the *availability of a thread*, not by a timer: an idle
batcher starts a lone request at once (no added wait at low load), and while every thread is busy
the requests that arrive meanwhile wait together for the next one. So batches grow exactly as fast
as the load does and the service's throughput grows with them. (The first version flushed a batch
every ``window_s`` whether or not a thread was free: under an open-loop load the batches stayed at
one or two requests, each paid the whole per-call cost, and the service sustained a third of its
closed-loop rate; ``RESULTS.md``, session 5.)

``window_s`` > 0 makes an idle batcher wait up to that long for a batch to fill before it starts
(more throughput at the price of that wait on every request); the default is 0.

``deadline_s`` > 0 refuses (503) a request still queued that long when a batch is formed: admitted
at a lull, it met a queue it could not get through in time, and scoring it anyway would answer it
late and delay every request behind it. Admission alone cannot promise that: the gate's shedder
steers the *average* wait, so in steady overload about half of what it admits waits longer, and
the admitted p99 at twice the sustainable rate was ~60 ms against the 40 ms the service aims at
(RESULTS.md, session 8). With the deadline an admitted request waits at most that long.

Admission stays with the :class:`~shopfusion.serving.gate.ModelGate`: a request that would queue
beyond its bound is refused (503) before it joins the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from shopfusion.serving.gate import ModelGate

R = TypeVar("R")
T = TypeVar("T")

#: Handles a batch: one result per request, in order; an exception in a slot fails that request only.
BatchFn = Callable[[Sequence[R]], Sequence[T | Exception]]


class _Counted:
    """One consumer's place in :attr:`MicroBatcher._running`, given back exactly once."""

    def __init__(self) -> None:
        self.held = True

    def release(self, batcher: MicroBatcher[Any, Any]) -> None:
        if self.held:
            self.held = False
            batcher._running -= 1


class MicroBatcher(Generic[R, T]):
    """``consumers``: batches scored at once, each in one of the gate's threads (at most its
    ``workers``). One by default: two batches in two Python threads fight over the GIL, and one
    thread taking bigger batches answered more, sooner (``RESULTS.md``, session 5); the gate's
    other threads stay free for searches and explanations."""

    def __init__(
        self,
        process: BatchFn[R, T],
        gate: ModelGate,
        window_s: float,
        max_batch: int,
        consumers: int = 1,
        deadline_s: float = 0.0,
    ) -> None:
        if max_batch < 1 or window_s < 0 or consumers < 1 or deadline_s < 0:
            raise ValueError("max_batch and consumers must be at least 1, window_s and deadline_s at least 0")
        if 0 < deadline_s <= window_s:
            raise ValueError(
                "deadline_s must exceed window_s: a request waiting out the window would be refused"
            )
        self.process, self.gate = process, gate
        self.window_s, self.max_batch, self.deadline_s = window_s, max_batch, deadline_s
        self.consumers = min(consumers, gate.workers)
        self.batches = 0  # how many batches were handled (tests and the stats page read it)
        self.requests = 0
        self.late = 0  # requests refused for having waited past the deadline
        # (request, its future, time.monotonic() when it arrived), oldest first
        self._queue: deque[tuple[R, asyncio.Future[T], float]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()  # strong references to the consumers
        # Consumers running, counted down by the consumer itself in the same step in which it finds
        # the queue empty: a task's done-callback runs later, and a request queued in between
        # would have found "a consumer running" and waited for nobody.
        self._running = 0
        self._waiters: list[asyncio.Future[None]] = []  # consumers waiting for a batch to fill

    async def submit(self, request: R) -> T:
        """The result of ``request``, handled in a batch; 503 at once when the model is full."""
        with self.gate.admit():
            future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
            self._queue.append((request, future, time.monotonic()))
            if len(self._queue) >= self.max_batch:
                self._wake_waiters()
            if self._running < self.consumers:
                self._running += 1
                counted = _Counted()
                task = asyncio.get_running_loop().create_task(self._consume(counted))
                self._tasks.add(task)
                task.add_done_callback(lambda done: self._finished(done, counted))
            return await future

    def _wake_waiters(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _finished(self, task: asyncio.Task[None], counted: _Counted) -> None:
        self._tasks.discard(task)
        counted.release(self)  # a consumer cancelled before its first step never counted down

    async def _consume(self, counted: _Counted) -> None:
        """Take batches off the queue until it is empty (one consumer per scoring thread)."""
        batch: list[tuple[R, asyncio.Future[T], float]] = []
        try:
            while self._queue:
                await self._wait_for_company()
                late = time.monotonic() - self.deadline_s if self.deadline_s > 0 else -math.inf
                while self._queue and len(batch) < self.max_batch:
                    entry = self._queue.popleft()
                    if entry[1].done():  # a client that went away costs no scoring
                        continue
                    if entry[2] < late:
                        entry[1].set_exception(self.gate.too_late())
                        self.late += 1
                        continue
                    batch.append(entry)
                if batch:
                    await self._run(batch)
                    batch = []
        except BaseException as exc:  # never leave a request waiting for a consumer that is gone
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else RuntimeError("stopped"))
            raise
        finally:
            counted.release(self)  # no await since the queue was found empty (see __init__)

    async def _wait_for_company(self) -> None:
        """With a window, wait until the oldest request is ``window_s`` old or a batch is full."""
        if self.window_s <= 0 or len(self._queue) >= self.max_batch:
            return
        left = self.window_s - (time.monotonic() - self._queue[0][2])
        if left <= 0:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter, left)

    async def _run(self, batch: list[tuple[R, asyncio.Future[T], float]]) -> None:
        requests = [request for request, _, _ in batch]
        results: Sequence[T | Exception]
        try:
            # The oldest request's wait for a thread is what the shedder holds down.
            results = await self.gate.in_thread(
                self.process, requests, queued_at=batch[0][2], requests=len(requests)
            )
            if len(results) != len(batch):
                raise RuntimeError(f"batch function returned {len(results)} results for {len(batch)}")
        except Exception as exc:  # the call as a whole failed: every request in it fails alike
            results = [exc] * len(batch)
        self.batches += 1
        self.requests += len(batch)
        for (_, future, _), result in zip(batch, results, strict=True):
            if future.done():  # the client went away meanwhile
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
