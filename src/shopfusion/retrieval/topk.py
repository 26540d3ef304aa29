"""The best ``k`` entries of each row: one exact order, whichever way they are found.

Order: score descending, then item index ascending; NaN counts as ``-inf``. Results never depend
on the selection method, the batch a row is in, or how an algorithm happened to break ties.

Two ways to find them:

- **Sampled threshold** (:func:`_sampled_top_k`; rows of at least :data:`MIN_SAMPLED_COLUMNS`
  items, ``k`` small beside them): a row's ``r``-th best in a strided sample (every
  :data:`SAMPLE_STRIDE`-th item) is a threshold that about :data:`SAMPLE_MARGIN` ``* k`` items pass.
  Only those are sorted, by one 64-bit key per item (row, score, index), so their order is exact by
  construction. Where fewer than ``k`` pass (a sparse source's row, mostly zeros), the row is
  completed with the items tied at the threshold, lowest index first; where even those are too
  few (a sample that missed the row's best), the row is selected in full. The top-k had been a
  fifth of a recommendation's scoring CPU; this way a batch's scoring costs ~22-26% less
  (``benchmarks/score_cost.py``: 2.8 -> 2.2 ms a lone request, 1.14 -> 0.85 ms at 8 a batch;
  RESULTS.md, session 16).
- **Full selection** (:func:`_selected_top_k`): only the *threshold* (each row's ``k``-th best)
  comes from a backend (``torch.topk`` when torch is already loaded, 2-3x faster than
  ``np.argpartition``; importing it just for this would cost a second and hundreds of MB in
  processes that never need it), then ties at the threshold are settled and the ``k`` sorted.
"""

from __future__ import annotations

import sys
from itertools import pairwise

import numpy as np
import numpy.typing as npt

from shopfusion.data.interactions import FloatArray, IntArray
from shopfusion.retrieval.blas import threads_for

#: Every this-many-th item of a row is sampled for its threshold.
SAMPLE_STRIDE = 32
#: The threshold is the sample's best ``SAMPLE_MARGIN * k / n_columns`` share, so about this many
#: times ``k`` items pass it; fewer than ``k`` only when the sample is far off (the row is then
#: completed or selected in full, never approximated).
SAMPLE_MARGIN = 3.0
#: Narrower rows, and a ``k`` above a quarter of the items that would pass, are selected in full:
#: there a sample saves little.
MIN_SAMPLED_COLUMNS = 1024
#: A key holds the row, 32 bits of score and the column: rows wider than ``2**24`` are selected
#: in full (and batches of more than ``2**(32 - column bits)`` rows sort each row's keys alone).
MAX_SAMPLED_COLUMN_BITS = 24


def _selected_top_k(values: FloatArray, k: int, n_requests: int) -> IntArray:
    """The full selection (module docstring) of ``values`` (float32, C-contiguous)."""
    columns = _some_top_k(values, k, n_requests)
    best = np.take_along_axis(values, columns, axis=1)
    # torch ranks NaN first, numpy last: make both -inf and choose again (numpy's choice is wrong
    # only where -inf made the cut, as NaN then ties with it)
    if np.isnan(best).any() or (np.isneginf(best).any() and np.isnan(values).any()):
        values = np.where(np.isnan(values), np.float32(-np.inf), values)
        columns = _some_top_k(values, k, n_requests)
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


def _samples_well(n_columns: int, k: int) -> bool:
    """Whether :func:`_sampled_top_k` applies (see the constants above)."""
    return (
        n_columns >= MIN_SAMPLED_COLUMNS
        and k * SAMPLE_MARGIN * 4 <= n_columns
        and (n_columns - 1).bit_length() <= MAX_SAMPLED_COLUMN_BITS
    )


def _descending_keys(values: FloatArray) -> npt.NDArray[np.uint64]:
    """32-bit keys whose ascending order is the floats' descending order (no NaN; -0.0 is 0.0)."""
    bits = (values + np.float32(0.0)).view(np.uint32)  # + 0.0 turns -0.0 into 0.0: they tie
    ascending = np.where(bits >> np.uint32(31), ~bits, bits | np.uint32(0x80000000))
    return (~ascending).astype(np.uint64)


def _sampled_top_k(values: FloatArray, k: int) -> tuple[IntArray, IntArray]:
    """The sampled selection (module docstring): ``(columns, rows it could not settle)``; those
    rows' columns are to be selected in full."""
    n_rows, n_columns = values.shape
    sample = values[:, ::SAMPLE_STRIDE]
    m = sample.shape[1]
    r = min(m, int(np.ceil(SAMPLE_MARGIN * k * m / n_columns)))
    # the sample's r-th best (NaN sorts last, as the largest: a NaN-heavy sample only lowers the
    # threshold, or makes it NaN and the row unsettled)
    threshold = np.partition(sample, m - r, axis=1)[:, m - r]
    flat = np.flatnonzero(values > threshold[:, None])  # NaN passes no threshold
    ptr = np.searchsorted(flat, np.arange(n_rows + 1) * n_columns)
    passed = np.diff(ptr)
    column_bits = max((n_columns - 1).bit_length(), 1)
    rows = np.repeat(np.arange(n_rows, dtype=np.uint64), passed)
    keys = rows << np.uint64(32 + column_bits)
    keys |= _descending_keys(values.ravel()[flat]) << np.uint64(column_bits)
    keys |= flat.astype(np.uint64) - rows * np.uint64(n_columns)
    # With more rows than 2**(32 - column_bits) the row bits overflow; flat (so keys) is in row
    # order already, and sorting each row's slice alone keeps it that way.
    if n_rows < 1 << (32 - column_bits):
        keys.sort()
    else:
        for start, end in pairwise(ptr.tolist()):
            keys[start:end].sort()
    # each row's first k keys (a row with fewer is completed below; its slots past its own keys
    # read whatever follows and are overwritten)
    columns = np.zeros((n_rows, k), dtype=np.int64)
    if len(keys):
        slots = np.minimum(ptr[:-1, None] + np.arange(k), len(keys) - 1)
        columns[:] = keys[slots] & np.uint64((1 << column_bits) - 1)
    unsettled = []
    for row in np.flatnonzero(passed < k):
        need = k - int(passed[row])
        tie = threshold[row]
        ties = np.flatnonzero(values[row] == tie)[:need] if np.isfinite(tie) else columns[row, :0]
        if len(ties) < need:  # the sample overshot, or a non-finite threshold (NaN ties -inf)
            unsettled.append(row)
        else:
            columns[row, passed[row] :] = ties
    return columns, np.array(unsettled, dtype=np.int64)


def top_k_indices(scores: FloatArray, k: int, n_requests: int | None = None) -> IntArray:
    """Column indices of each row's ``min(k, n_columns)`` best scores, best first.

    Order: score descending, then index ascending; NaN counts as ``-inf``. ``scores`` is not
    modified. Returns an ``(n_rows, min(k, n_columns))`` int64 array. ``n_requests``: how many
    requests the rows serve, where several rows belong to one request (it sets the threads of a
    full selection, as for the rest of their work); the row count by default."""
    n_rows, n_columns = scores.shape
    k = min(k, n_columns)
    if k == 0 or n_rows == 0:
        return np.zeros((n_rows, k), dtype=np.int64)
    requests = n_rows if n_requests is None else n_requests
    values = np.ascontiguousarray(scores, dtype=np.float32)
    if not _samples_well(n_columns, k):
        return _selected_top_k(values, k, requests)
    columns, unsettled = _sampled_top_k(values, k)
    if len(unsettled):
        columns[unsettled] = _selected_top_k(np.ascontiguousarray(values[unsettled]), k, len(unsettled))
    return columns
