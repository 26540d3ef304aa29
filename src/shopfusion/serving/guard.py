"""The ASGI middleware in front of every route: admission control, rate limits, body size
limits and request metrics.

Shedding happens here, first and before any other work, so a refusal costs as little as the
ASGI layer allows: past ``max_in_flight`` concurrent requests the excess gets 503 at once (with
``Retry-After``), and a client over its rate gets 429.

Requests answered from the cache never wait inside the app, so when they alone saturate the CPU
the queue forms *before* the app: in the event loop, unseen by ``max_in_flight``. The loop's lag
(:class:`LoopLag`: how late a timer fires) is the queueing delay of a request arriving now; it
steers a :class:`~shopfusion.serving.admission.DelayShedder`, which refuses the fraction of new
requests needed to hold that delay near its target. The refusals are prerendered bytes, sent
before the headers are even read, so the loop catches up and the admitted requests keep their
latency while throughput of answered requests stays near what the CPU sustains.

Requests for which ``exempt`` says so — cache hits, which cost only about twice their refusal
(most of either is HTTP parsing and writing) — are never shed by the delay: refusing them would
free almost no CPU and only lower goodput (docs/serving.md, "What to shed").
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shopfusion.serving.admission import DelayShedder
from shopfusion.serving.metrics import Metrics
from shopfusion.serving.security import RateLimiter, hash_key

#: The access log names the route template, never the path or query: those carry user ids.
access_log = logging.getLogger("shopfusion.access")

#: Paths never shed or rate limited: probes and scrapes must work when the service is busy.
UNGUARDED = ("/healthz", "/readyz", "/metrics")


class BodyTooLargeError(Exception):
    pass


class LoopLag:
    """How late the event loop runs a timer due now, measured every ``interval_s`` by :meth:`run`
    (a task of the app's lifespan): the time a request that just arrived waits to be looked at.

    The shedder gets the *smallest* of the last ``window`` measurements: a queue that stands (the
    loop is late at every tick), not one late tick (a garbage collection, a scoring thread holding
    the GIL), which no refusal would have shortened."""

    def __init__(self, shedder: DelayShedder, interval_s: float = 0.005, window: int = 4) -> None:
        self.shedder, self.interval_s = shedder, interval_s
        self.lag_s = 0.0
        self.ticks = 0  # measurements so far: shows the monitor runs
        self._recent: deque[float] = deque(maxlen=window)

    async def run(self) -> None:
        while True:
            due = time.perf_counter() + self.interval_s  # uvloop's clock ticks in whole ms
            await asyncio.sleep(self.interval_s)
            self.lag_s = max(0.0, time.perf_counter() - due)
            self._recent.append(self.lag_s)
            self.shedder.observe(min(self._recent))
            self.ticks += 1


def prerendered(status: int, detail: str, headers: Mapping[str, str]) -> tuple[Message, Message]:
    """The two ASGI messages of a small JSON error response, to build once and send often."""
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in headers.items()]
    return {"type": "http.response.start", "status": status, "headers": raw}, {
        "type": "http.response.body",
        "body": body,
    }


#: The overload refusal, built once: it is sent most often exactly when the CPU is short.
_OVERLOADED = prerendered(503, "the service is at capacity; retry shortly", {"Retry-After": "1"})


async def reply(send: Send, status: int, detail: str, headers: Mapping[str, str] | None = None) -> None:
    """Send a small JSON error response (``{"detail": ...}``), as FastAPI renders an HTTPException."""
    start, body = prerendered(status, detail, headers or {})
    await send(start)
    await send(body)


class GuardMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        limiter: RateLimiter,
        max_in_flight: int,
        max_body_bytes: int,
        access_log: bool = True,
        shedder: DelayShedder | None = None,
        exempt: Callable[[Scope], bool] | None = None,
    ) -> None:
        self.app, self.metrics, self.limiter = app, metrics, limiter
        self.max_in_flight, self.max_body_bytes = max_in_flight, max_body_bytes
        self.access_log = access_log
        self.shedder = shedder if shedder is not None and shedder.enabled else None
        # Requests that cost less to answer than to refuse (cache hits): never shed.
        self.exempt = exempt
        self.in_flight = 0
        self._overloaded = metrics.rejected.labels("overloaded")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path in UNGUARDED:
            await self.app(scope, receive, send)
            return
        # Cheapest first: under overload most requests end here.
        if self.in_flight >= self.max_in_flight or self._shed(scope):
            self._overloaded.inc()
            await send(_OVERLOADED[0])
            await send(_OVERLOADED[1])
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if int(headers.get("content-length", "0") or 0) > self.max_body_bytes:
            self.metrics.rejected.labels("too_large").inc()
            await reply(send, 413, f"request body over {self.max_body_bytes} bytes; send smaller batches")
            return
        # The limit follows the key when there is one (hashed: raw keys never become labels).
        client = hash_key(headers["x-api-key"]) if headers.get("x-api-key") else _address(scope)
        allowed, wait = self.limiter.allow(client)
        if not allowed:
            self.metrics.rejected.labels("rate_limited").inc()
            await reply(
                send, 429, "rate limit exceeded; slow down", {"Retry-After": str(max(1, math.ceil(wait)))}
            )
            return
        await self._serve(scope, receive, send)

    def _shed(self, scope: Scope) -> bool:
        if self.shedder is None or self.shedder.admit():
            return False
        return self.exempt is None or not self.exempt(scope)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.in_flight += 1
        self.metrics.in_flight.inc()
        started = time.perf_counter()
        status = 500
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:  # chunked bodies carry no content-length
                raise BodyTooLargeError
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLargeError:
            status = 413
            self.metrics.rejected.labels("too_large").inc()
            await reply(send, 413, f"request body over {self.max_body_bytes} bytes; send smaller batches")
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.dec()
            route = _route(scope)
            elapsed = time.perf_counter() - started
            self.metrics.latency.labels(route, scope["method"]).observe(elapsed)
            if self.access_log:
                access_log.info("%s %s %d %.1f ms", scope["method"], route, status, 1000 * elapsed)
            self.metrics.requests.labels(route, str(status)).inc()
            if status >= 500 and status != 503:
                self.metrics.errors.labels(route).inc()


def _address(scope: Scope) -> str:
    client: Any = scope.get("client")
    return f"addr:{client[0]}" if client else "addr:unknown"


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path is None and str(scope.get("path", "")).startswith("/static/"):
        path = "/static"  # the mounted static files share one label
    # Unmatched paths share one label so that scanners cannot blow up the metric's cardinality.
    return str(path) if path else "unmatched"
