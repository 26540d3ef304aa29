"""The best ``k`` entries of each row: one exact order, whichever backend finds them.

Picking every source's top candidates was a third of a served scoring call: ``np.argpartition``
over 12k items per row and source, and far slower still on the many tied scores of sparse sources
(RESULTS.md, session 6). ``torch.topk`` finds the same threshold 2-3x faster, so it is used when
torch is already loaded (it is whenever a sequential model is); importing it just for this would
cost a second and hundreds of MB in processes that never need it.

Either way only the *threshold* (each row's ``k``-th best score) comes from the backend; which items
make the cut and their order come from one exact rule, score descending and then item index
ascending, so results never depend on the backend, the batch a row is in, or how a selection
algorithm happened to break ties.
"""

from __future__ import annotations

import sys

import numpy as np

from shopfusion.data.interactions import FloatArray, IntArray
from shopfusion.retrieval.blas import threads_for


def _some_top_k(scores: FloatArray, k: int, n_requests: int) -> IntArray:
    """``k`` columns per row holding that row's ``k`` best scores, in no particular order; among
    entries tied at the ``k``-th score, the backend's choice (``1 <= k <= n_columns``)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        from shopfusion.retrieval._torch_utils import torch_threads

        # torch wraps the array without copying and warns on a read-only one (a memory-mapped
        # artifact's arrays): copy those.
        tensor = torch.from_numpy(scores if scores.flags.writeable else scores.copy())
        with torch_threads(threads_for(n_requests, torch.get_num_threads())):
            found = torch.topk(tensor, k, dim=1, sorted=False)
        columns: IntArray = found.indices.numpy()
        return columns
    return np.argpartition(-scores, k - 1, axis=1)[:, :k]


def top_k_indices(scores: FloatArray, k: int, n_requests: int | None = None) -> IntArray:
    """Column indices of each row's ``min(k, n_columns)`` best scores, best first.

    Order: score descending, then index ascending; NaN counts as ``-inf``. ``scores`` is not
    modified. Returns an ``(n_rows, min(k, n_columns))`` int64 array. ``n_requests``: how many
    requests the rows serve, where several rows belong to one request (it sets the threads, as
    for the rest of their work); the row count by default."""
    n_rows, n_columns = scores.shape
    k = min(k, n_columns)
    if k == 0 or n_rows == 0:
        return np.zeros((n_rows, k), dtype=np.int64)
    requests = n_rows if n_requests is None else n_requests
    values = np.ascontiguousarray(scores, dtype=np.float32)
    columns = _some_top_k(values, k, requests)
    best = np.take_along_axis(values, columns, axis=1)
    if np.isnan(best).any():  # torch ranks NaN first, numpy last: make both -inf and choose again
        values = np.where(np.isnan(values), np.float32(-np.inf), values)
        columns = _some_top_k(values, k, requests)
        best = np.take_along_axis(values, columns, axis=1)
    # The set is exact except where more entries tie at a row's k-th score than it kept: there
    # the ties it keeps are the lowest indices. One comparison pass finds those rows (few: most
    # rows' k-th score is unique).
    threshold = best.min(axis=1)
    kept_ties = np.count_nonzero(best == threshold[:, None], axis=1)
    for row in np.flatnonzero(np.count_nonzero(values == threshold[:, None], axis=1) > kept_ties):
        above = np.flatnonzero(values[row] > threshold[row])
        ties = np.flatnonzero(values[row] == threshold[row])[: kept_ties[row]]
        columns[row] = np.concatenate([above, ties])
        best[row] = values[row, columns[row]]
    order = np.lexsort((columns, -best), axis=1)
    return np.take_along_axis(columns, order, axis=1).astype(np.int64)
