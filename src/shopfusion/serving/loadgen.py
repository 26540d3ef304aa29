"""An open-loop HTTP load generator (what ``shopfusion bench load`` runs).

Open loop: request ``i`` is sent at ``start + i / rate`` whether or not earlier ones came back,
and its latency is measured from that *scheduled* time. A closed-loop client slows down when the
server does and so hides queueing (coordinated omission); this one does not.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np


@dataclass
class LoadResult:
    endpoint: str
    target_rate: float
    duration_s: float
    sent: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    latencies_ok_s: list[float] = field(default_factory=list)
    latencies_refused_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        ok = np.array(self.latencies_ok_s) * 1000 if self.latencies_ok_s else np.zeros(1)
        refused = np.array(self.latencies_refused_s) * 1000 if self.latencies_refused_s else np.zeros(1)
        n_ok = len(self.latencies_ok_s)
        server_errors = sum(c for s, c in self.statuses.items() if s.startswith("5") and s != "503")
        return {
            "endpoint": self.endpoint,
            "target_rps": self.target_rate,
            "duration_s": self.duration_s,
            "sent": self.sent,
            "ok": n_ok,
            "ok_rps": round(n_ok / self.wall_s, 1) if self.wall_s else 0.0,
            "statuses": dict(sorted(self.statuses.items())),
            "server_errors_5xx_not_503": server_errors,
            "transport_errors": self.statuses.get("error", 0),
            "ok_latency_ms": {
                "p50": round(float(np.percentile(ok, 50)), 2),
                "p90": round(float(np.percentile(ok, 90)), 2),
                "p99": round(float(np.percentile(ok, 99)), 2),
                "max": round(float(ok.max()), 2),
            },
            "refused_latency_ms_p99": round(float(np.percentile(refused, 99)), 2)
            if self.latencies_refused_s
            else None,
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


async def run_load(
    base_url: str,
    paths: Sequence[str],
    rate: float,
    duration_s: float,
    endpoint: str,
    timeout_s: float = 5.0,
    headers: dict[str, str] | None = None,
    connections: int = 32,
) -> LoadResult:
    """Send ``rate * duration_s`` requests on a schedule; a request waiting for one of the
    ``connections`` keep-alive connections still counts its wait (from its scheduled time)."""
    result = LoadResult(endpoint, rate, duration_s)
    n = int(rate * duration_s)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(
        base_url=base_url, limits=limits, timeout=timeout_s, headers=headers
    ) as client:

        async def one(path: str, scheduled: float) -> None:
            try:
                response = await client.get(path)
                status = str(response.status_code)
            except httpx.HTTPError:
                status = "error"
            latency = time.perf_counter() - scheduled
            result.statuses[status] += 1
            if status == "200":
                result.latencies_ok_s.append(latency)
            elif status in ("429", "503"):
                result.latencies_refused_s.append(latency)

        start = time.perf_counter()
        tasks = []
        for i in range(n):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(paths[i % len(paths)], scheduled)))
            result.sent += 1
        await asyncio.gather(*tasks)
        result.wall_s = time.perf_counter() - start
    return result
