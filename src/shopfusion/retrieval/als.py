"""Alternating least squares on implicit feedback (Hu, Koren & Volinsky 2008) via ``implicit``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from shopfusion.data.interactions import FloatArray, Histories, RowWeights
from shopfusion.errors import ModelFitError
from shopfusion.retrieval.base import Retriever, TrainData
from shopfusion.retrieval.blas import one_blas_thread, single_blas_thread_if_small


class ALSRetriever(Retriever):
    """Matrix factorisation; a request's user vector is solved from its history at query time,
    so new users and sessions are served without retraining (same solver as training)."""

    name: ClassVar[str] = "als"
    search_space: ClassVar[tuple[Mapping[str, Any], ...]] = tuple(
        {"factors": 128, "regularization": r, "alpha": a} for r in (0.01, 1.0) for a in (1.0, 10.0)
    )

    def __init__(
        self,
        factors: int = 128,
        regularization: float = 0.01,
        alpha: float = 1.0,
        iterations: int = 15,
        recency_half_life: float | None = None,
        random_state: int = 42,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.recency_half_life = recency_half_life
        self.random_state = random_state

    def _model(self) -> AlternatingLeastSquares:
        # implicit warns at construction when BLAS is multi-threaded; its own threads do the work.
        with threadpool_limits(1, "blas"):
            return AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                random_state=self.random_state,
            )

    def _fit(self, data: TrainData) -> None:
        model = self._model()
        user_items = data.histories.to_csr(recency_half_life=self.recency_half_life)
        # implicit parallelises itself; an outer BLAS pool would oversubscribe the cores.
        with threadpool_limits(1, "blas"):
            model.fit(user_items, show_progress=False)
        factors = np.asarray(model.item_factors, dtype=np.float32)
        if not np.all(np.isfinite(factors)):
            raise ModelFitError(
                "ALS produced non-finite item factors: raise `regularization` or lower `alpha`"
            )
        self.item_factors_ = factors
        self.__dict__.pop("_gram_inv", None)  # a refit invalidates the cached inverse

    def user_factors(self, requests: Histories) -> FloatArray:
        """Least-squares user vectors for each request's history (zeros for an empty history).

        The same normal equations as implicit's solver (confidence ``alpha·r``), solved here
        from a cached ``(YᵀY + λI)⁻¹``: for one request that is a solve the size of its history,
        not a pass over the catalog, which keeps a single recommendation fast.
        """
        user_items = requests.weights(recency_half_life=self.recency_half_life)
        out = np.zeros((len(requests), self.item_factors_.shape[1]), dtype=np.float32)
        with one_blas_thread():
            self._solve_rows(user_items, out)
        return out

    def _gram_inverse(self) -> npt.NDArray[np.float64]:
        """``(YᵀY + λI)⁻¹``, computed once per fit or load."""
        if not hasattr(self, "_gram_inv"):
            full = self.item_factors_.astype(np.float64)
            gram = full.T @ full + self.regularization * np.eye(full.shape[1])
            self._gram_inv: npt.NDArray[np.float64] = np.asarray(np.linalg.inv(gram), dtype=np.float64)
        return self._gram_inv

    def _solve_rows(self, user_items: RowWeights, out: FloatArray) -> None:
        """``x = (G + Uᵀ D U)⁻¹ Uᵀ c`` for each row, with ``G = YᵀY + λI``, ``U`` the history's item
        factors, ``c`` their confidences and ``D = diag(c - 1)``.

        By the Woodbury identity, with ``P = U G⁻¹`` and ``K = P Uᵀ``:
        ``x = Pᵀ (c - t)`` where ``(I + D K) t = D K c``. That system is as large as the history
        (a few items) instead of the factor count (128): a batch of 16 solves costs a third of
        the direct ``factors x factors`` solves (RESULTS.md, session 7), with the same result to
        float32 precision (tests compare both).
        """
        indptr = user_items.indptr
        history = self.item_factors_[user_items.indices].astype(np.float64)
        projected = history @ self._gram_inverse()  # P for every history item at once: one GEMM
        confidence = self.alpha * user_items.data.astype(np.float64)
        for row in range(len(out)):
            start, end = indptr[row], indptr[row + 1]
            if start == end:
                continue
            p, u, c = projected[start:end], history[start:end], confidence[start:end]
            k = p @ u.T
            d = c - 1.0
            system = k * d[:, None]
            system[np.diag_indices_from(system)] += 1.0
            out[row] = p.T @ (c - np.linalg.solve(system, d * (k @ c)))

    def _factors_transposed(self) -> FloatArray:
        """``Yᵀ`` laid out contiguously, once per item factors (a fit, a load, or factors assigned
        by :mod:`~shopfusion.retrieval.coldstart`): the catalog product with a transposed view
        cost a served batch up to 1.5x as much (RESULTS.md, session 8)."""
        made = self.__dict__.get("_transposed")
        if made is None or made[0] is not self.item_factors_:
            made = self._transposed = (self.item_factors_, np.ascontiguousarray(self.item_factors_.T))
        transposed: FloatArray = made[1]
        return transposed

    def _score(self, requests: Histories) -> FloatArray:
        users = self.user_factors(requests)
        with single_blas_thread_if_small(len(requests)):
            scores: FloatArray = users @ self._factors_transposed()
            return scores

    def _arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {"item_factors": self.item_factors_}

    def _restore(self, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        self.item_factors_ = arrays["item_factors"]
        self.__dict__.pop("_gram_inv", None)
