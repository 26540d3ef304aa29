"""Each request's weighted sum of item rows of a sparse item x item matrix, as a dense row.

The neighbourhood sources (transitions, item-to-item, content neighbours) score a request as
``Σ_j w_j M[j]`` over its history items ``j``. Done as scipy's ``weights @ M`` then ``.toarray()``,
a served call paid scipy's per-call format and index-type checks and built a sparse result only to
spread it out again (RESULTS.md, session 18).

:func:`weighted_rows` adds the products straight into the dense rows, in the order scipy's
``csr_matmat`` adds them (per request, history entries in stored order, then each matrix row's
entries in stored order, accumulated in float32), so every score is bit for bit the one the
scipy product gives.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from shopfusion.data.interactions import FloatArray, IntArray, RowWeights
from shopfusion.search.rows import RowSelection


def weighted_rows(weights: RowWeights, matrix: sp.csr_matrix) -> FloatArray:
    """``(weights @ matrix).toarray()`` for a float32 CSR ``matrix``, equal entry for entry."""
    n_rows, n_columns = len(weights.indptr) - 1, matrix.shape[1]
    if matrix.dtype != np.float32:  # the order below is float32's: let scipy do other types
        left = sp.csr_matrix((weights.data, weights.indices, weights.indptr), shape=(n_rows, matrix.shape[0]))
        return np.asarray((left @ matrix).toarray(), dtype=np.float32)
    picked = RowSelection(matrix, weights.indices)  # each history entry's matrix row, in order
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(weights.indptr))
    keys = np.repeat(rows * n_columns, picked.lengths) + picked.columns
    products = (np.repeat(weights.data, picked.lengths) * picked.data).astype(np.float32, copy=False)
    out = np.zeros(n_rows * n_columns, dtype=np.float32)
    # ufunc.at adds unbuffered and in order: each entry's sum runs through its products exactly
    # as csr_matmat's float32 accumulator does (a sum of +0.0 and products never gives -0.0,
    # and csr_matmat drops exact zeros, which toarray turns into +0.0 alike).
    np.add.at(out, keys, products)
    return out.reshape(n_rows, n_columns)


def gathered_rows(items: IntArray, matrix: sp.csr_matrix) -> FloatArray:
    """Row ``items[r]`` of ``matrix`` for each request ``r`` as a dense row; ``-1``: a row of 0."""
    present = np.flatnonzero(items >= 0)
    indptr = np.zeros(len(items) + 1, dtype=np.int64)
    indptr[present + 1] = 1
    np.cumsum(indptr, out=indptr)
    # Each row times one, added to 0: the row's own values.
    unit = RowWeights(indptr, items[present].astype(np.int64), np.ones(len(present), dtype=np.float32))
    return weighted_rows(unit, matrix)
