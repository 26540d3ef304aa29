"""One BLAS thread for small, latency-bound work.

A single request's linear algebra (a 128x128 solve, one user vector against the catalog) is too
small to gain from BLAS threads, and when the cores are busy a multi-threaded BLAS spins and
waits: on a loaded 2-core machine a 128x128 ``solve`` took 17 ms instead of well under one.
``threadpoolctl.threadpool_limits`` rescans the loaded libraries on every call (~2 ms), so a
controller is made once and reused (~10 µs per use) — until modules were imported since: a library
imported later may bring its own BLAS (torch, faiss, scipy's OpenBLAS), which a controller made
before it does not know and would leave multi-threaded.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from threadpoolctl import ThreadpoolController

#: Batches at least this large keep every BLAS thread (offline scoring, evaluation).
SMALL_BATCH = 64


_made_for: tuple[int, ThreadpoolController] | None = None


def _controller() -> ThreadpoolController:
    """The controller of the BLAS libraries loaded now (remade when modules were imported since)."""
    global _made_for
    n_modules = len(sys.modules)
    made = _made_for
    if made is None or made[0] != n_modules:
        made = (n_modules, ThreadpoolController())
        _made_for = made  # two threads remaking it at once is harmless: both scan the same libraries
    return made[1]


_held = threading.local()  # whether this thread is inside a one_blas_thread block


class _Pin:
    """The process-wide limit of :func:`pinned_to_one_blas_thread`: the module count it was set
    at (re-applied when modules were imported since, as :func:`_controller` does), its limiters,
    oldest first (the first holds the settings to restore), and a generation that each thread
    catches up with once. Pins nest (two apps in one process, as in tests): the first sets the
    limit and the last one out restores it.

    A pthreads BLAS (numpy's, scipy's OpenBLAS) keeps one thread count for the process, but an
    OpenMP build (faiss's OpenBLAS) keeps it per thread, as OpenMP does: each thread that runs
    BLAS work sets its own once (kept until the thread ends; only the pinning thread restores)."""

    def __init__(self) -> None:
        self.modules = -1  # -1: not pinned
        self.limiters: list[Any] = []
        self.generation = 0
        self.depth = 0  # pins entered and not yet left
        self.lock = threading.Lock()
        self._threads = threading.local()

    def apply(self) -> None:
        # A fresh scan (~2 ms, once a pin): the shared controller goes by the module count alone,
        # which an import and a removal since can leave unchanged.
        self.modules = len(sys.modules)
        self.generation += 1
        self.limiters.append(ThreadpoolController().limit(limits=1, user_api="blas"))
        self._threads.generation = self.generation

    def release(self) -> None:
        limiters, self.limiters, self.modules = self.limiters, [], -1
        self.generation += 1
        for limiter in reversed(limiters):
            limiter.restore_original_limits()

    def holds(self) -> bool:
        """Whether a pin holds; first limits what this thread has not limited yet. Cheap while
        nothing changed (a read of the module count and a thread-local); the rare update runs
        under the lock, so that a pin being released is never applied again."""
        if self.modules < 0:
            return False
        if self.modules == len(sys.modules) and getattr(self._threads, "generation", 0) == self.generation:
            return True
        with self.lock:
            if self.modules < 0:
                return False
            if self.modules != len(sys.modules):
                self.apply()  # a library imported since may bring its own BLAS: limit it too
            if getattr(self._threads, "generation", 0) != self.generation:
                # this thread's own setting of an OpenMP BLAS (not restored: see the class)
                ThreadpoolController().limit(limits=1, user_api="blas")
                self._threads.generation = self.generation
        return True


_pin = _Pin()


@contextmanager
def pinned_to_one_blas_thread() -> Iterator[None]:
    """BLAS on one thread for the whole process while the block runs (a server's lifetime).

    Everything a server computes is one request's or one small batch's work, which
    :func:`one_blas_thread` would limit anyway; but setting and restoring a limit costs ~50-100 us
    (threadpoolctl's generic machinery, twice a search: ~2% of it; RESULTS.md, session 15).
    Inside this block :func:`one_blas_thread` costs nothing, and batches of :data:`SMALL_BATCH` or
    more run on one thread too: on a server the other cores are serving."""
    with _pin.lock:
        _pin.depth += 1
        if _pin.depth == 1:
            _pin.apply()
    try:
        yield
    finally:
        with _pin.lock:
            _pin.depth -= 1
            if _pin.depth == 0:
                _pin.release()


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Limit BLAS to one thread, whatever the batch: for loops of small solves, which never gain
    from threads (a 128-request batch of 128x128 solves took 29 ms a solve with two busy threads).

    Inside another such block of the same thread it does nothing: a served batch holds one limit
    for all its sources, where each setting and restoring it cost a scoring call ~2% (RESULTS.md,
    session 7)."""
    if _pin.holds():
        yield
        _pin.holds()  # a library the block imported (a lazy faiss, say) is limited from now on
        return
    if getattr(_held, "limit", False):
        yield
        return
    with _controller().limit(limits=1, user_api="blas"):
        _held.limit = True
        try:
            yield
        finally:
            _held.limit = False


def threads_for(n_requests: int, most: int) -> int:
    """Threads for a library with its own pool (torch): one for a batch under :data:`SMALL_BATCH`,
    as for its BLAS work — a second thread saves little there and spins on the core the server's
    event loop needs — else ``most``."""
    return 1 if n_requests < SMALL_BATCH else most


def single_blas_thread_if_small(n_requests: int) -> AbstractContextManager[Any]:
    """Limit BLAS to one thread for a batch of fewer than :data:`SMALL_BATCH` requests."""
    if n_requests >= SMALL_BATCH:
        return nullcontext()
    return one_blas_thread()
