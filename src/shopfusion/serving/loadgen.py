"""The HTTP load generator of ``shopfusion bench load``: open loop or closed loop, over a fixed pool
of keep-alive connections written with raw asyncio streams (no HTTP client library in the way).

Open loop: request ``i`` is due at ``start + i / rate`` whether or not earlier ones came back, and
its latency is measured from that *due* time. A closed-loop client slows down when the server
does and so hides queueing (coordinated omission); this one does not: when every connection is
busy, the next due request waits for one, and that wait counts in its latency. Each connection's
loop takes the next due slot, sleeps until it is due, sends, reads the whole response, repeats.

Closed loop (``rate=None``): each connection sends its next request as soon as the previous one
came back; the throughput reached is the server's capacity at that concurrency.

Latencies are kept apart by outcome: answered (2xx), shed (429 and 503: the server refusing work
it cannot do in time) and everything else, so an overload run shows the latency of the admitted
requests and not a blend with the quick refusals. ``send_lag`` is how late the generator itself
sent requests (due time to write): when it grows, every connection was busy (the server is slow
to answer, or there are too few connections) or the generator itself was short of CPU; the
answered requests' ``wire`` latency (from their actual send) then tells the server's share.

Only what a benchmark of this service needs: ``GET``, HTTP/1.1, ``Content-Length`` or chunked
bodies, plain ``http://``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np

SHED = frozenset({429, 503})


@dataclass
class LoadResult:
    """What one run saw, counted over the requests due after the warm-up."""

    endpoint: str
    target_rate: float | None  # None: closed loop
    duration_s: float
    connections: int
    sent: int = 0
    # Due, but every connection stayed busy for longer than the timeout: never sent (a client
    # would have given up). Counted under status "unsent" too; a sign of too few connections.
    unsent: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    latencies_ok_s: list[float] = field(default_factory=list)
    latencies_shed_s: list[float] = field(default_factory=list)
    latencies_other_s: list[float] = field(default_factory=list)
    send_lag_s: list[float] = field(default_factory=list)
    # Answered requests timed from their actual send, not their due time: the server's share of
    # their latency (compare with latencies_ok_s: the difference is time spent waiting to be sent).
    wire_ok_s: list[float] = field(default_factory=list)

    def record(self, status: str, latency_s: float) -> None:
        self.statuses[status] += 1
        if status.startswith("2"):
            self.latencies_ok_s.append(latency_s)
        elif status.isdigit() and int(status) in SHED:
            self.latencies_shed_s.append(latency_s)
        else:
            self.latencies_other_s.append(latency_s)

    def summary(self) -> dict[str, Any]:
        n_ok, n_shed = len(self.latencies_ok_s), len(self.latencies_shed_s)
        server_errors = sum(
            c for s, c in self.statuses.items() if s.startswith("5") and s.isdigit() and int(s) not in SHED
        )
        return {
            "endpoint": self.endpoint,
            "mode": "closed" if self.target_rate is None else "open",
            "connections": self.connections,
            "target_rps": self.target_rate,
            "duration_s": self.duration_s,
            "sent": self.sent,
            "unsent": self.unsent,
            "ok": n_ok,
            "ok_rps": round(n_ok / self.duration_s, 1),
            "shed": n_shed,
            "shed_rps": round(n_shed / self.duration_s, 1),
            "statuses": dict(sorted(self.statuses.items())),
            "server_errors_5xx_not_503": server_errors,
            "transport_errors": self.statuses.get("error", 0),
            "timeouts": self.statuses.get("timeout", 0),
            "ok_latency_ms": percentiles_ms(self.latencies_ok_s),
            "ok_wire_latency_ms": percentiles_ms(self.wire_ok_s),
            "shed_latency_ms": percentiles_ms(self.latencies_shed_s),
            "other_latency_ms": percentiles_ms(self.latencies_other_s),
            "send_lag_ms": percentiles_ms(self.send_lag_s),
        }


def percentiles_ms(latencies_s: Sequence[float]) -> dict[str, float] | None:
    """p50, p90, p99 and max in milliseconds; ``None`` when there is nothing to summarise."""
    if not latencies_s:
        return None
    ms = np.asarray(latencies_s) * 1000
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "p50": round(float(p50), 2),
        "p90": round(float(p90), 2),
        "p99": round(float(p99), 2),
        "max": round(float(ms.max()), 2),
    }


def request_paths(
    endpoint: str, users: Sequence[str], items: Sequence[str], queries: Sequence[str], n: int, seed: int = 0
) -> list[str]:
    """``n`` request paths for ``endpoint`` (recommend | search | similar), drawn with a seed."""
    rng = random.Random(seed)
    if endpoint == "recommend":
        return [f"/v1/recommend?user_id={quote(rng.choice(users))}&k=10" for _ in range(n)]
    if endpoint == "similar":
        return [f"/v1/similar/{quote(rng.choice(items), safe='')}?k=10" for _ in range(n)]
    if endpoint == "search":
        return [
            f"/v1/search?q={quote(rng.choice(queries))}&user_id={quote(rng.choice(users))}&k=10"
            for _ in range(n)
        ]
    raise ValueError(f"unknown endpoint {endpoint!r}: use recommend, search or similar")


class _Connection:
    """One keep-alive HTTP/1.1 connection; reopened after an error or ``Connection: close``."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.retry_after_s = 0.0  # the last response's Retry-After

    async def get(self, request: bytes) -> int:
        """Send one prebuilt request, read the whole response, return its status code (and keep
        its ``Retry-After`` seconds, 0 when absent, in :attr:`retry_after_s`)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, chunked, close = 0, False, False
        self.retry_after_s = 0.0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                close = b"close" in value.lower()
            elif name == b"retry-after" and value.strip().isdigit():
                self.retry_after_s = float(value)
        if chunked:
            await self._skip_chunks()
        elif length:
            await self.reader.readexactly(length)
        if close:
            self.close()
        return status

    async def _skip_chunks(self) -> None:
        assert self.reader is not None
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await self.reader.readexactly(size + 2)  # the chunk and its CRLF
            if size == 0:
                return

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def run_load(
    base_url: str,
    paths: Sequence[str],
    rate: float | None,
    duration_s: float,
    endpoint: str,
    *,
    connections: int = 64,
    warmup_s: float = 0.0,
    timeout_s: float = 5.0,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """Drive ``base_url`` for ``warmup_s + duration_s`` seconds over ``connections`` connections,
    cycling through ``paths``; ``rate`` requests/s open loop, or closed loop when ``None``.

    Only requests due after the warm-up are counted. A request that gets no full response within
    ``timeout_s`` counts as ``timeout`` (its connection is reopened); one still unanswered when
    the run ends is waited for up to ``timeout_s``; one that found no free connection within
    ``timeout_s`` of its due time is not sent at all (``unsent``), so a run ends at most
    ``timeout_s`` after its last due time. In a closed loop a connection refused with a
    ``Retry-After`` (429 or 503) waits that long before its next request; an open loop's arrivals
    do not depend on the answers."""
    if rate is not None and rate <= 0:
        raise ValueError("rate must be positive (or None for a closed loop)")
    if not paths or connections < 1:
        raise ValueError("need at least one path and one connection")
    url = urlsplit(base_url)
    if url.scheme != "http" or not url.hostname:
        raise ValueError(f"only plain http:// URLs are supported, not {base_url!r}")
    port = url.port or 80
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    host_header = f"Host: {url.netloc}\r\n{extra}\r\n"
    prebuilt = [f"GET {p} HTTP/1.1\r\n{host_header}".encode("latin-1") for p in paths]
    result = LoadResult(endpoint, rate, duration_s, connections)
    clock = time.perf_counter  # uvloop's loop.time() ticks in whole milliseconds
    start = clock() + 0.05  # time to open the first connections
    counted_from, end = start + warmup_s, start + warmup_s + duration_s
    next_slot = 0

    async def one_connection() -> None:
        nonlocal next_slot
        conn = _Connection(url.hostname or "", port)
        try:
            while True:
                slot = next_slot
                next_slot += 1
                now = clock()
                due = start + slot / rate if rate is not None else max(now, start)
                if due >= end:
                    return
                if due > now:
                    await asyncio.sleep(due - now)
                elif now - due > timeout_s:  # waited its whole timeout for a free connection
                    if due >= counted_from:
                        result.unsent += 1
                        result.record("unsent", timeout_s)
                    continue
                sent_at = clock()
                try:
                    status = str(await asyncio.wait_for(conn.get(prebuilt[slot % len(prebuilt)]), timeout_s))
                except TimeoutError:
                    conn.close()
                    status = "timeout"
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                    conn.close()
                    status = "error"
                if due >= counted_from:
                    done = clock()
                    result.sent += 1
                    result.send_lag_s.append(sent_at - due)
                    result.record(status, done - due)
                    if status.startswith("2"):
                        result.wire_ok_s.append(done - sent_at)
                if rate is None and status in ("429", "503") and conn.retry_after_s > 0:
                    # A closed loop's client waits out a refusal's Retry-After, as real clients
                    # do: sending its next request at once made a storm of refusals that took the
                    # CPU from the requests being served (RESULTS.md, sessions 6 to 8).
                    await asyncio.sleep(max(0.0, min(conn.retry_after_s, end - clock())))
        finally:
            conn.close()

    await asyncio.gather(*(one_connection() for _ in range(connections)))
    return result
