"""Per-request latency of a trained artifact: one user's full ranking, as the service computes it."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt

from shopfusion.artifact import Artifact
from shopfusion.ranking.pipeline import FusionRetriever
from shopfusion.retrieval.base import top_k
from shopfusion.retrieval.scores import mask_history


def measure_latency(artifact: Artifact, n_requests: int = 500, k: int = 10, seed: int = 0) -> dict[str, Any]:
    """Score every item for single users drawn at random (history excluded), ``n_requests`` times.

    Wall-clock percentiles of the whole request, plus the CPU time of the calling thread: on a
    machine shared with other work the CPU time stays close to the idle figure while wall-clock
    time grows with the queue for the cores. For a fused pipeline, ``sources_cpu_ms`` gives each
    source's median CPU time per request (measured in a second pass over the same users).
    """
    rng = np.random.default_rng(seed)
    histories = artifact.histories
    users = rng.choice(np.flatnonzero(histories.lengths() > 0), size=n_requests, replace=True)
    model = artifact.model
    for user in users[:20]:  # warm caches and lazy loads; not timed
        model.score(histories.rows([int(user)]))
    wall = np.empty(n_requests)
    cpu = np.empty(n_requests)
    for i, user in enumerate(users):
        request = histories.rows([int(user)])
        started, started_cpu = time.perf_counter(), time.thread_time()
        scores = model.score(request)
        mask_history(scores, request)
        top_k(scores, k)
        wall[i] = time.perf_counter() - started
        cpu[i] = time.thread_time() - started_cpu
    report: dict[str, Any] = {
        "n_requests": n_requests,
        "n_items": histories.n_items,
        "k": k,
        **_percentiles(wall * 1000, ""),
        **_percentiles(cpu * 1000, "cpu_"),
    }
    if isinstance(model, FusionRetriever):
        per_source: dict[str, list[float]] = {name: [] for name in model.sources_}
        for user in users:
            request = histories.rows([int(user)])
            for name, source in model.sources_.items():
                started_cpu = time.thread_time()
                source.score(request)
                per_source[name].append(time.thread_time() - started_cpu)
        report["sources_cpu_ms"] = {
            name: round(float(np.median(values)) * 1000, 3) for name, values in per_source.items()
        }
    return report


def _percentiles(ms: npt.NDArray[np.float64], prefix: str) -> dict[str, float]:
    return {
        f"{prefix}p50_ms": round(float(np.percentile(ms, 50)), 3),
        f"{prefix}p95_ms": round(float(np.percentile(ms, 95)), 3),
        f"{prefix}p99_ms": round(float(np.percentile(ms, 99)), 3),
        f"{prefix}mean_ms": round(float(ms.mean()), 3),
    }
