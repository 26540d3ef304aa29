"""Per-request latency of a trained artifact: one user's full ranking, as the service computes it."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from shopfusion.artifact import Artifact
from shopfusion.retrieval.base import mask_history, top_k


def measure_latency(artifact: Artifact, n_requests: int = 500, k: int = 10, seed: int = 0) -> dict[str, Any]:
    """Score every item for single users drawn at random (history excluded), ``n_requests`` times."""
    rng = np.random.default_rng(seed)
    histories = artifact.histories
    users = rng.choice(np.flatnonzero(histories.lengths() > 0), size=n_requests, replace=True)
    model = artifact.model
    for user in users[:20]:  # warm caches and lazy loads; not timed
        model.score(histories.rows([int(user)]))
    timings = np.empty(n_requests)
    for i, user in enumerate(users):
        request = histories.rows([int(user)])
        started = time.perf_counter()
        scores = model.score(request)
        mask_history(scores, request)
        top_k(scores, k)
        timings[i] = time.perf_counter() - started
    ms = timings * 1000
    return {
        "n_requests": n_requests,
        "n_items": histories.n_items,
        "k": k,
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(ms.mean()), 3),
    }
