"""The ASGI middleware in front of every route: admission control, rate limits, body size
limits and request metrics.

Shedding happens here, before any work: past ``max_in_flight`` concurrent requests the excess
gets 503 at once (with ``Retry-After``) instead of queueing behind the model, so the latency of
admitted requests stays bounded under overload; a client over its rate gets 429.

Requests answered from the cache never wait inside the app, so when they alone saturate the CPU
the queue forms *before* the app: in the event loop, unseen by ``max_in_flight``. The loop's lag
(:class:`LoopLag`: how late a timer fires) measures that queue; while it is above
``max_loop_lag_s`` new requests get 503 at once, which costs a fraction of serving them, so the
loop catches up and admitted requests keep their latency.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
    (a task of the app's lifespan): the time a request that just arrived waits to be looked at."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.lag_s = 0.0
        self.ticks = 0  # measurements so far: shows the monitor runs

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval_s
            await asyncio.sleep(self.interval_s)
            self.lag_s = max(0.0, loop.time() - due)
            self.ticks += 1


async def _reply(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        limiter: RateLimiter,
        max_in_flight: int,
        max_body_bytes: int,
        access_log: bool = True,
        loop_lag: LoopLag | None = None,
        max_loop_lag_s: float = 0.0,
    ) -> None:
        self.app, self.metrics, self.limiter = app, metrics, limiter
        self.max_in_flight, self.max_body_bytes = max_in_flight, max_body_bytes
        self.access_log = access_log
        # Shed on loop lag only with a monitor and a positive bound.
        self.loop_lag = loop_lag if max_loop_lag_s > 0 else None
        self.max_loop_lag_s = max_loop_lag_s
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path in UNGUARDED:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if int(headers.get("content-length", "0") or 0) > self.max_body_bytes:
            self.metrics.rejected.labels("too_large").inc()
            await _reply(send, 413, f"request body over {self.max_body_bytes} bytes; send smaller batches")
            return
        # The limit follows the key when there is one (hashed: raw keys never become labels).
        client = hash_key(headers["x-api-key"]) if headers.get("x-api-key") else _address(scope)
        allowed, wait = self.limiter.allow(client)
        if not allowed:
            self.metrics.rejected.labels("rate_limited").inc()
            await _reply(
                send, 429, "rate limit exceeded; slow down", {"Retry-After": str(max(1, math.ceil(wait)))}
            )
            return
        if self.in_flight >= self.max_in_flight or (
            self.loop_lag is not None and self.loop_lag.lag_s > self.max_loop_lag_s
        ):
            self.metrics.rejected.labels("overloaded").inc()
            await _reply(send, 503, "the service is at capacity; retry shortly", {"Retry-After": "1"})
            return
        await self._serve(scope, receive, send)

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
            await _reply(send, 413, f"request body over {self.max_body_bytes} bytes; send smaller batches")
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
