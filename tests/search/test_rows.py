"""Row products without scipy's row selection must give scipy's numbers bit for bit."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from shopfusion.search.rows import RowSelection


def _matrix() -> sp.csr_matrix:
    dense = sp.random(300, 80, density=0.2, dtype=np.float32, random_state=1).toarray()
    dense[5] = 0  # an empty row
    return sp.csr_matrix(dense)


def _row_sets(rng: np.random.Generator) -> list[np.ndarray]:
    return [
        rng.integers(0, 300, 200).astype(np.int64),
        np.array([5, 5, 0, 299], dtype=np.int64),  # repeats and an empty row
        np.zeros(0, dtype=np.int64),
    ]


def test_row_products_equal_scipys_bit_for_bit() -> None:
    matrix, rng = _matrix(), np.random.default_rng(0)
    vector = rng.normal(size=80).astype(np.float32)
    for rows in _row_sets(rng):
        expected = np.asarray(matrix[rows] @ vector, dtype=np.float32).ravel()
        assert np.array_equal(RowSelection(matrix, rows).dot(vector), expected)


def test_column_sums_equal_scipys_bit_for_bit() -> None:
    matrix, rng = _matrix(), np.random.default_rng(1)
    for rows in _row_sets(rng):
        plain = np.asarray(matrix[rows].sum(axis=0), dtype=np.float32).ravel()
        assert np.array_equal(RowSelection(matrix, rows).column_sums(), plain)
        weights = rng.random(len(rows)).astype(np.float32)
        ordered = rows[np.argsort(rows, kind="stable")] if len(np.unique(rows)) == len(rows) else None
        if ordered is None:
            continue  # repeated rows: scipy merges their weights first (see _Behaviour.affinity)
        w = weights[np.argsort(rows, kind="stable")]
        expected = np.asarray(
            (
                sp.csr_matrix((w, (np.zeros(len(rows), dtype=np.int64), ordered)), shape=(1, 300)) @ matrix
            ).toarray(),
            dtype=np.float32,
        ).ravel()
        assert np.array_equal(RowSelection(matrix, ordered).column_sums(w), expected)
