"""Admission control for model work: a bounded number of requests may wait for or hold a scoring
thread; past that the request is refused at once (503 with ``Retry-After``) instead of queueing.

Cache hits never pass the gate (they are answered on the event loop), so under overload the
service keeps answering hot requests fast and sheds only the work it cannot finish in time: a
queue of ``max_pending`` requests behind ``workers`` threads bounds the wait of an admitted one,
and a :class:`~shopfusion.serving.admission.DelayShedder` fed with each job's wait for a thread
refuses the fraction of new requests needed to hold that wait near its target.
Recommendations and similar items reach the threads in micro-batches
(:mod:`shopfusion.serving.batcher`), which pass the same gate one request at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

import anyio
import anyio.to_thread
from fastapi import HTTPException

from shopfusion.serving.admission import DelayShedder
from shopfusion.serving.metrics import Metrics

T = TypeVar("T")

#: Weight of the newest job in :attr:`ModelGate.job_s` (about the last 10 jobs count).
JOB_TIME_WEIGHT = 0.1
#: Weight of the newest arrival in :attr:`ModelGate.refused_share` (about the last 50 count) ...
REFUSAL_WEIGHT = 0.02
#: ... and the share above which the gate is in overload and holds the tighter budget: about
#: six refusals running, where a burst at a normal rate refuses one or two.
OVERLOAD_SHARE = 0.1

#: Set while a request whose shedding draw was already made before routing is served
#: (:mod:`shopfusion.serving.fastpath` refuses plain misses there, where it is cheaper): the
#: route's :meth:`ModelGate.admit` then does not draw a second time.
drawn_early: ContextVar[bool] = ContextVar("shopfusion_drawn_early", default=False)


class ModelGate:
    """``wait_budget_s`` (0: none) bounds the wait of an admitted job when each job is one request
    (searches): a request is refused when the jobs admitted before it would keep the threads busy
    longer than that (their count times the recent mean job time, over ``workers``). Unlike the
    shedder's samples, which come when a job *starts*, this sees a queue while it builds.

    ``overload_budget_s`` (0: none) replaces a wait budget while the gate refuses a sustained share
    of the arrivals (:data:`OVERLOAD_SHARE`): in steady overload an admitted request waits about
    the whole budget, so a tight one keeps its latency low, while a burst at a normal rate still
    meets the roomier one and is served rather than refused."""

    def __init__(
        self,
        workers: int,
        max_pending: int,
        metrics: Metrics,
        shedder: DelayShedder | None = None,
        wait_budget_s: float = 0.0,
        overload_budget_s: float = 0.0,
    ) -> None:
        self.workers, self.max_pending, self.metrics = workers, max_pending, metrics
        self.shedder = shedder if shedder is not None else DelayShedder(0.0)
        self.wait_budget_s, self.overload_budget_s = wait_budget_s, overload_budget_s
        self.refused_share = 0.0  # moving average over arrivals of "refused as full"
        self.job_s = 0.0  # moving average of a request's CPU time in its thread (0: none ran yet)
        self.pending = 0
        self._limiter: anyio.CapacityLimiter | None = None

    def expected_wait_s(self) -> float:
        """How long the jobs admitted so far would keep every thread busy."""
        return self.pending * self.job_s / self.workers

    def budget_s(self) -> float:
        """The wait budget now (0: none): the overload budget while a sustained share is refused.
        Without a wait budget there is none in overload either (the queue bound alone holds)."""
        if self.wait_budget_s > 0 and self.overload_budget_s > 0 and self.refused_share > OVERLOAD_SHARE:
            return self.overload_budget_s
        return self.wait_budget_s

    def _full(self) -> bool:
        """Whether an arrival finds the gate full; called once per arrival, so it also counts the
        decision in :attr:`refused_share`."""
        budget = self.budget_s()
        full = self.pending >= self.max_pending or (budget > 0 and self.expected_wait_s() > budget)
        self.refused_share += REFUSAL_WEIGHT * (float(full) - self.refused_share)
        return full

    def refuses(self) -> bool:
        """Whether a new miss would be refused now (counted as ``model_busy`` when it is); this is
        the request's one shedding draw."""
        if self._full() or not self.shedder.admit():
            self.metrics.rejected.labels("model_busy").inc()
            return True
        return False

    def too_late(self) -> HTTPException:
        """The refusal of a request that waited past its deadline in a queue (counted as
        ``model_late``): by then it could only be answered later than the service aims to."""
        self.metrics.rejected.labels("model_late").inc()
        return HTTPException(503, "the model is at capacity; retry shortly", headers={"Retry-After": "1"})

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Count the request as pending while the block runs; refuse it (503) when full, when its
        wait would exceed the budget, or when the shedder says so (unless its draw was made before
        routing)."""
        if self._full() or (not drawn_early.get() and not self.shedder.admit()):
            self.metrics.rejected.labels("model_busy").inc()
            raise HTTPException(503, "the model is at capacity; retry shortly", headers={"Retry-After": "1"})
        self.pending += 1
        try:
            yield
        finally:
            self.pending -= 1

    async def in_thread(
        self, fn: Callable[..., T], *args: object, queued_at: float | None = None, requests: int = 1
    ) -> T:
        """Run ``fn`` in one of the ``workers`` scoring threads (no admission check); the time from
        ``queued_at`` (``time.monotonic()``, default now) until it starts is the shedder's sample.
        ``requests``: how many requests the job serves (a batch); :attr:`job_s` averages the CPU
        time per request, as :meth:`expected_wait_s` counts requests."""
        if self._limiter is None:  # created lazily: it belongs to the running event loop
            self._limiter = anyio.CapacityLimiter(self.workers)
        since = time.monotonic() if queued_at is None else queued_at

        def timed() -> T:
            self.shedder.observe(time.monotonic() - since)
            # The job's own CPU time, not its wall time: wall time also counts the GIL held by
            # the event loop, and under a retry storm (clients re-sending each 503 at once) the
            # loop answering refusals slowed every search, which raised the mean, which refused
            # more: goodput fell to 3 searches/s (RESULTS.md, session 6).
            started = time.thread_time()
            try:
                return fn(*args)
            finally:
                took = (time.thread_time() - started) / max(requests, 1)
                self.job_s = took if self.job_s == 0 else self.job_s + JOB_TIME_WEIGHT * (took - self.job_s)

        return await anyio.to_thread.run_sync(timed, limiter=self._limiter)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Admit one request and run ``fn`` for it in a scoring thread."""
        with self.admit():
            return await self.in_thread(fn, *args)
