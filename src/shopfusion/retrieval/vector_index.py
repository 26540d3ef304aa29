"""Exact inner-product nearest neighbours: faiss (``IndexFlatIP``) when installed, else numpy.

Both backends give the same neighbours and scores (up to float rounding); ties are broken by the
lower id in the numpy backend. With L2-normalised vectors the inner product is the cosine.
"""

from __future__ import annotations

import importlib
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from shopfusion.data.interactions import FloatArray, IntArray
from shopfusion.errors import ConfigError
from shopfusion.retrieval.topk import top_k_indices

Backend = Literal["auto", "faiss", "numpy"]
#: Query rows scored per numpy matrix product (bounds memory at rows x items floats).
_NUMPY_BATCH = 1024


class VectorIndex:
    """``add`` vectors, then ``search`` the ``k`` with the largest inner product for each query.

    Ids are insertion positions (``0..len-1``). Rows with fewer than ``k`` vectors are padded with
    id ``-1`` and score ``-inf``.
    """

    def __init__(self, dim: int, backend: Backend = "auto") -> None:
        self.dim = dim
        self.backend = _resolve(backend)
        self._vectors = np.zeros((0, dim), dtype=np.float32)
        self._faiss: Any = None
        if self.backend == "faiss":
            self._faiss = importlib.import_module("faiss").IndexFlatIP(dim)

    def __len__(self) -> int:
        return len(self._vectors)

    def add(self, vectors: npt.ArrayLike) -> None:
        rows = self._check(vectors)
        if self._faiss is not None:
            self._faiss.add(rows)
        self._vectors = np.concatenate([self._vectors, rows])

    def search(self, queries: npt.ArrayLike, k: int) -> tuple[IntArray, FloatArray]:
        """``(ids, scores)``, each ``(len(queries), k)``, best first."""
        q = self._check(queries)
        kk = min(k, len(self))
        if kk == 0:
            ids, scores = np.zeros((len(q), 0), dtype=np.int64), np.zeros((len(q), 0), dtype=np.float32)
        elif self._faiss is not None:
            raw_scores, raw_ids = self._faiss.search(q, kk)
            ids, scores = raw_ids.astype(np.int64), raw_scores.astype(np.float32)
        else:
            ids, scores = self._numpy_search(q, kk)
        if kk < k:
            ids = np.pad(ids, ((0, 0), (0, k - kk)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, k - kk)), constant_values=-np.inf)
        return ids, scores

    @property
    def vectors(self) -> FloatArray:
        """Every added vector, in id order (a view: do not modify)."""
        return self._vectors

    def _numpy_search(self, q: FloatArray, k: int) -> tuple[IntArray, FloatArray]:
        ids = np.empty((len(q), k), dtype=np.int64)
        scores = np.empty((len(q), k), dtype=np.float32)
        for start in range(0, len(q), _NUMPY_BATCH):
            block = q[start : start + _NUMPY_BATCH] @ self._vectors.T
            best = top_k_indices(block, k)
            ids[start : start + len(block)] = best
            scores[start : start + len(block)] = np.take_along_axis(block, best, axis=1)
        return ids, scores

    def _check(self, vectors: npt.ArrayLike) -> FloatArray:
        rows = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
        if rows.ndim == 1:
            rows = rows[None, :]
        if rows.ndim != 2 or rows.shape[1] != self.dim:
            raise ConfigError(f"VectorIndex holds {self.dim}-d vectors; got shape {rows.shape}")
        if not np.all(np.isfinite(rows)):
            raise ConfigError("VectorIndex: vectors hold NaN or inf; fix the embeddings before indexing")
        return rows


def faiss_available() -> bool:
    try:
        importlib.import_module("faiss")
    except ImportError:
        return False
    return True


def _resolve(backend: Backend) -> Literal["faiss", "numpy"]:
    if backend == "numpy":
        return "numpy"
    if faiss_available():
        return "faiss"
    if backend == "faiss":
        raise ConfigError("VectorIndex backend 'faiss' needs faiss: `pip install faiss-cpu`")
    return "numpy"
