"""One BLAS thread for small, latency-bound work.

A single request's linear algebra (a 128x128 solve, one user vector against the catalog) is too
small to gain from BLAS threads, and when the cores are busy a multi-threaded BLAS spins and
waits: on a loaded 2-core machine a 128x128 ``solve`` took 17 ms instead of well under one.
``threadpoolctl.threadpool_limits`` rescans the loaded libraries on every call (~2 ms), so one
controller is made once and reused (~10 µs per use).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from functools import cache
from typing import Any

from threadpoolctl import ThreadpoolController

#: Batches at least this large keep every BLAS thread (offline scoring, evaluation).
SMALL_BATCH = 64


@cache
def _controller() -> ThreadpoolController:
    return ThreadpoolController()


def one_blas_thread() -> AbstractContextManager[Any]:
    """Limit BLAS to one thread, whatever the batch: for loops of small solves, which never gain
    from threads (a 128-request batch of 128x128 solves took 29 ms a solve with two busy threads)."""
    limited: AbstractContextManager[Any] = _controller().limit(limits=1, user_api="blas")
    return limited


def single_blas_thread_if_small(n_requests: int) -> AbstractContextManager[Any]:
    """Limit BLAS to one thread for a batch of fewer than :data:`SMALL_BATCH` requests."""
    if n_requests >= SMALL_BATCH:
        return nullcontext()
    return one_blas_thread()
