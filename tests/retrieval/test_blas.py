"""Small batches run their linear algebra on one BLAS thread; large ones keep every thread."""

from __future__ import annotations

from threadpoolctl import threadpool_info

from shopfusion.retrieval.blas import SMALL_BATCH, single_blas_thread_if_small


def _blas_threads() -> list[int]:
    return [int(lib["num_threads"]) for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_small_batches_use_one_blas_thread_and_restore_the_setting() -> None:
    before = _blas_threads()
    with single_blas_thread_if_small(1):
        assert all(n == 1 for n in _blas_threads())
    assert _blas_threads() == before
    with single_blas_thread_if_small(SMALL_BATCH):
        assert _blas_threads() == before
