"""Small batches run their linear algebra on one BLAS thread; large ones keep every thread."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from shopfusion.data.interactions import Histories
from shopfusion.retrieval import ALSRetriever, TrainData
from shopfusion.retrieval.blas import SMALL_BATCH, single_blas_thread_if_small


def _blas_threads() -> list[int]:
    return [int(lib["num_threads"]) for lib in threadpool_info() if lib["user_api"] == "blas"]


def _count_limits(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record each limit that blas sets, through its shared controller or a fresh one."""
    from threadpoolctl import ThreadpoolController

    from shopfusion.retrieval import blas

    made: list[dict[str, Any]] = []

    class Counting:
        def limit(self, **kwargs: Any) -> Any:
            made.append(kwargs)
            return ThreadpoolController().limit(**kwargs)

    monkeypatch.setattr(blas, "_controller", lambda: Counting())
    monkeypatch.setattr(blas, "ThreadpoolController", Counting)
    return made


def test_small_batches_use_one_blas_thread_and_restore_the_setting() -> None:
    before = _blas_threads()
    with single_blas_thread_if_small(1):
        assert all(n == 1 for n in _blas_threads())
    assert _blas_threads() == before
    with single_blas_thread_if_small(SMALL_BATCH):
        assert _blas_threads() == before


def test_als_solves_each_request_on_one_blas_thread_even_in_a_large_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The per-request solves are tiny: BLAS threads only spin (29 ms a solve on busy cores)."""
    histories = Histories.from_lists([[i % 7, (i + 1) % 7, (i + 3) % 7] for i in range(80)], n_items=7)
    model = ALSRetriever(factors=4, iterations=2).fit(TrainData(histories))
    seen: list[list[int]] = []
    solve = np.linalg.solve

    def recording_solve(a: Any, b: Any) -> Any:
        seen.append(_blas_threads())
        return solve(a, b)

    monkeypatch.setattr(np.linalg, "solve", recording_solve)
    before = _blas_threads()
    scores = model.score(histories.rows(np.arange(SMALL_BATCH + 10)))
    assert before, "numpy's BLAS is visible to threadpoolctl"
    assert len(seen) == SMALL_BATCH + 10 and all(threads == [1] * len(before) for threads in seen)
    assert _blas_threads() == before and np.isfinite(scores).all()


def test_the_controller_is_remade_after_new_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    """A library imported after the first limit may bring its own BLAS (it did in the test suite:
    one of three BLAS libraries stayed at two threads); new imports make a new controller."""
    import sys
    import types

    from shopfusion.retrieval import blas

    first = blas._controller()
    assert blas._controller() is first  # reused while nothing new is imported
    monkeypatch.setitem(sys.modules, "_shopfusion_test_new_module", types.ModuleType("new"))
    assert blas._controller() is not first


def test_a_nested_limit_in_the_same_thread_is_free_and_keeps_the_outer_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A served batch holds one limit for all its sources: their own limits inside it neither
    re-scan the libraries nor lift the outer limit when they end."""
    from shopfusion.retrieval import blas

    made = _count_limits(monkeypatch)
    before = _blas_threads()
    with blas.one_blas_thread():
        with blas.one_blas_thread():
            assert all(n == 1 for n in _blas_threads())
        assert all(n == 1 for n in _blas_threads())
    assert len(made) == 1 and _blas_threads() == before


def test_a_pinned_process_runs_blas_on_one_thread_and_limits_cost_nothing_inside(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server pins BLAS to one thread for its lifetime: the per-search limits inside are free,
    even large batches run on one thread, and the settings come back when the pin ends."""
    from shopfusion.retrieval import blas

    before = _blas_threads()
    made = _count_limits(monkeypatch)
    with blas.pinned_to_one_blas_thread():
        assert len(made) == 1 and all(n == 1 for n in _blas_threads())
        for _ in range(3):
            with blas.one_blas_thread():
                assert all(n == 1 for n in _blas_threads())
        with single_blas_thread_if_small(SMALL_BATCH):
            assert all(n == 1 for n in _blas_threads())
        assert len(made) == 1
    assert _blas_threads() == before


def test_a_pin_limits_again_after_new_imports_and_restores_the_first_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys
    import types

    from shopfusion.retrieval import blas

    before = _blas_threads()
    with blas.pinned_to_one_blas_thread():
        first = list(blas._pin.limiters)
        monkeypatch.setitem(sys.modules, "_shopfusion_test_pinned_module", types.ModuleType("new"))
        with blas.one_blas_thread():
            assert all(n == 1 for n in _blas_threads())
        assert len(blas._pin.limiters) == len(first) + 1
    assert _blas_threads() == before and blas._pin.limiters == []


def test_each_thread_of_a_pinned_process_runs_an_openmp_blas_on_one_thread_too() -> None:
    """An OpenMP build of a BLAS (faiss's OpenBLAS) keeps its thread count per thread: a scoring
    thread's first limit inside the pin sets its own, and every BLAS it sees runs on one thread."""
    import threading

    from shopfusion.retrieval import blas

    pytest.importorskip("faiss")  # brings an OpenMP OpenBLAS where its wheel has one
    seen: list[list[int]] = []

    def scoring_thread() -> None:
        for _ in range(2):
            with blas.one_blas_thread():
                seen.append(_blas_threads())

    with blas.pinned_to_one_blas_thread():
        worker = threading.Thread(target=scoring_thread)
        worker.start()
        worker.join()
    assert len(seen) == 2 and all(n == 1 for threads in seen for n in threads)


def test_pins_nest_and_the_last_one_out_restores_the_settings() -> None:
    """Two apps in one process (tests start several): the first app to stop must not lift the
    other's pin."""
    from shopfusion.retrieval import blas

    before = _blas_threads()
    outer = blas.pinned_to_one_blas_thread()
    outer.__enter__()
    with blas.pinned_to_one_blas_thread():
        assert all(n == 1 for n in _blas_threads())
    assert blas._pin.holds() and all(n == 1 for n in _blas_threads())
    outer.__exit__(None, None, None)
    assert not blas._pin.holds() and _blas_threads() == before
