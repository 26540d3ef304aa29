"""Products with a few rows of a big CSR matrix, without scipy's row selection.

``matrix[rows]`` builds a new sparse matrix (index checks, copies): for the few hundred candidates
or the few history items of one search that was most of the cost of the product that follows.
:class:`RowSelection` reads the stored entries of those rows straight from the CSR arrays, and sums
them as scipy does — from zero, each row's stored entries in order — so the numbers are equal bit
for bit (``tests/search/test_rows.py``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


class RowSelection:
    """The stored entries of ``matrix[rows]`` (rows may repeat), row after row."""

    def __init__(self, matrix: sp.csr_matrix, rows: IntArray) -> None:
        starts = matrix.indptr[rows]
        self.lengths = matrix.indptr[rows + 1] - starts
        positions = np.repeat(starts - np.cumsum(self.lengths) + self.lengths, self.lengths) + np.arange(
            self.lengths.sum()
        )
        self.data = matrix.data[positions]
        self.columns = matrix.indices[positions]
        self.n, self.n_columns = len(rows), matrix.shape[1]

    def dot(self, vector: npt.NDArray[np.floating]) -> FloatArray:
        """``matrix[rows] @ vector``, one number per row."""
        out = np.zeros(self.n, dtype=np.result_type(self.data.dtype, vector.dtype))
        np.add.at(out, np.repeat(np.arange(self.n), self.lengths), self.data * vector[self.columns])
        return out.astype(np.float32, copy=False)

    def column_sums(self, weights: npt.NDArray[np.floating] | None = None) -> FloatArray:
        """``weights @ matrix[rows]`` (all ones without ``weights``), one number per column."""
        if weights is None:
            values = self.data
        else:
            dtype = np.result_type(self.data.dtype, weights.dtype)
            values = self.data.astype(dtype, copy=False) * np.repeat(weights.astype(dtype), self.lengths)
        out = np.zeros(self.n_columns, dtype=values.dtype)
        np.add.at(out, self.columns, values)
        return out.astype(np.float32, copy=False)
