"""Shedding when the event loop itself is the queue: cache hits saturate the CPU."""

from __future__ import annotations

import asyncio
import time

import httpx
from serving_support import ClientFactory

from shopfusion.serving.guard import GuardMiddleware, LoopLag
from shopfusion.serving.metrics import Metrics
from shopfusion.serving.security import RateLimiter


async def _ok_app(scope, receive, send):  # type: ignore[no-untyped-def]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _guard(lag: LoopLag, max_loop_lag_s: float) -> GuardMiddleware:
    return GuardMiddleware(
        _ok_app,
        Metrics(),
        RateLimiter(1000, 1000),
        max_in_flight=100,
        max_body_bytes=1000,
        loop_lag=lag,
        max_loop_lag_s=max_loop_lag_s,
    )


def test_loop_lag_measures_a_blocked_loop_and_recovers() -> None:
    lag = LoopLag(interval_s=0.005)

    async def run() -> tuple[float, float]:
        ticker = asyncio.create_task(lag.run())
        await asyncio.sleep(0.02)
        time.sleep(0.06)  # the loop is stuck, as when it has more requests than CPU
        await asyncio.sleep(0.003)
        blocked = lag.lag_s
        await asyncio.sleep(0.05)
        ticker.cancel()
        return blocked, lag.lag_s

    blocked, recovered = asyncio.run(run())
    assert blocked > 0.03
    assert recovered < 0.02


def test_requests_are_shed_at_once_while_the_loop_lags() -> None:
    lag = LoopLag()
    guard = _guard(lag, max_loop_lag_s=0.02)

    async def statuses() -> list[tuple[int, str | None]]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guard), base_url="http://t") as http:
            out = []
            for lagging in (0.0, 0.05, 0.0):
                lag.lag_s = lagging
                response = await http.get("/v1/recommend")
                out.append((response.status_code, response.headers.get("retry-after")))
            probe = await http.get("/readyz")  # probes are never shed
            out.append((probe.status_code, None))
            return out

    assert asyncio.run(statuses()) == [(200, None), (503, "1"), (200, None), (200, None)]
    assert guard.metrics.rejected.labels("overloaded")._value.get() == 1


def test_loop_lag_shedding_can_be_turned_off() -> None:
    lag = LoopLag()
    lag.lag_s = 10.0
    guard = _guard(lag, max_loop_lag_s=0.0)

    async def status() -> int:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guard), base_url="http://t") as http:
            return (await http.get("/v1/recommend")).status_code

    assert asyncio.run(status()) == 200


def test_the_app_runs_the_lag_monitor(client_factory: ClientFactory) -> None:
    client = client_factory(max_loop_lag_ms=1000)
    guard = client.app.middleware_stack  # type: ignore[attr-defined]
    while not isinstance(guard, GuardMiddleware):
        guard = guard.app
    assert guard.loop_lag is not None and guard.max_loop_lag_s == 1.0
    time.sleep(0.1)
    assert guard.loop_lag.ticks > 3  # the lifespan started it
    assert client.get("/v1/recommend", params={"user_id": "u0001"}).status_code == 200
