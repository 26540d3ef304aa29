"""A source's scores for a batch of requests, kept in the most compact form that is still exact.

A served request needs from each source only its top candidates and its scores of the other
sources' candidates, never the full ``(requests, n_items)`` matrix. For a source whose scores are
the same for every request (popularity), building that matrix and picking each row's top ``k``
of 12k columns cost as much as a model's scoring (RESULTS.md, session 7), when its top ``k`` is
the first ``k`` of one precomputed order outside the history. So :meth:`Retriever.score_compact
<shopfusion.retrieval.base.Retriever.score_compact>` returns either form, both answering the same
two questions exactly as the dense matrix would:

- :meth:`~SourceScores.proposals`: each request's best ``k`` items, history excluded, in the one
  order of :func:`~shopfusion.retrieval.topk.top_k_indices` (score descending, then item index
  ascending; non-finite scores are never proposed);
- :meth:`~SourceScores.at`: the score of given (request, item) pairs.

Tests check every form against :class:`DenseScores` of its :meth:`~SourceScores.dense` matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from shopfusion.data.interactions import FloatArray, Histories, IntArray
from shopfusion.retrieval.topk import top_k_indices


@dataclass(frozen=True)
class Proposals:
    """Flat (request row, item, 1-based rank) triples: each row's best items, in any order."""

    rows: IntArray
    items: IntArray
    ranks: FloatArray


class SourceScores(Protocol):
    @property
    def shape(self) -> tuple[int, int]: ...

    def dense(self) -> FloatArray:
        """The full ``(requests, n_items)`` float32 matrix."""

    def proposals(self, requests: Histories, k: int) -> Proposals:
        """Each request's best ``k`` items outside its history (fewer where fewer are finite)."""

    def at(self, rows: IntArray, items: IntArray) -> FloatArray:
        """Scores of the pairs ``(rows[i], items[i])``, float32."""


def mask_history(scores: FloatArray, requests: Histories) -> None:
    """Set the scores of items already in each request's history to ``-inf`` (in place)."""
    rows = np.repeat(np.arange(len(requests)), requests.lengths())
    scores[rows, requests.items] = -np.inf


#: :func:`union_of_keys` marks a bitmap while it is at most this many bytes per key ...
BITMAP_BYTES_PER_KEY = 256
#: ... and at most this big.
MAX_BITMAP_SIZE = 1 << 24


def union_of_keys(parts: Sequence[IntArray], size: int) -> IntArray:
    """``np.unique(np.concatenate(parts))`` for keys in ``[0, size)``: sorted, distinct, int64.

    Where ``size`` is small beside the keys' count, marking them in a bitmap and reading it back
    is several times faster than sorting them (16 requests x 5 sources x 100 random keys over
    16 x 12,101: 0.07 against 0.77 ms; RESULTS.md, session 16); a sparse key space is sorted."""
    keys = np.concatenate(parts) if len(parts) else np.zeros(0, dtype=np.int64)
    if size > BITMAP_BYTES_PER_KEY * len(keys) or size > MAX_BITMAP_SIZE:
        return np.unique(keys).astype(np.int64, copy=False)
    marked = np.zeros(size, dtype=bool)
    marked[keys] = True
    return np.flatnonzero(marked)


def _history_keys(requests: Histories, n_items: int) -> IntArray:
    """Sorted unique ``row * n_items + item`` of every request's history."""
    rows = np.repeat(np.arange(len(requests), dtype=np.int64), requests.lengths())
    return union_of_keys([rows * n_items + requests.items], len(requests) * n_items)


def _in_sorted(keys: IntArray, sorted_keys: IntArray) -> npt.NDArray[np.bool_]:
    """Which ``keys`` occur in ``sorted_keys`` (sorted, unique)."""
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    found: npt.NDArray[np.bool_] = sorted_keys[at] == keys
    return found


def _ranks_within_rows(rows: IntArray, n_rows: int) -> IntArray:
    """0-based position of each entry within its row, for ``rows`` sorted ascending."""
    starts = np.searchsorted(rows, np.arange(n_rows))
    ranks: IntArray = np.arange(len(rows)) - starts[rows]
    return ranks


@dataclass(frozen=True)
class DenseScores:
    """Every score, as a ``(requests, n_items)`` matrix (what most sources compute anyway)."""

    matrix: FloatArray

    @property
    def shape(self) -> tuple[int, int]:
        rows, columns = self.matrix.shape
        return rows, columns

    def dense(self) -> FloatArray:
        return np.asarray(self.matrix, dtype=np.float32)

    def proposals(self, requests: Histories, k: int) -> Proposals:
        return dense_proposals([self], requests, k)[0]

    def at(self, rows: IntArray, items: IntArray) -> FloatArray:
        return np.asarray(self.matrix[rows, items], dtype=np.float32)


def dense_proposals(forms: Sequence[DenseScores], requests: Histories, k: int) -> list[Proposals]:
    """:meth:`DenseScores.proposals` of several sources' scores of the same requests, at once.

    The matrices are stacked and masked together and searched by one :func:`top_k_indices` call:
    at a served request's size, each call's fixed costs (a dozen numpy and torch calls on a
    12k-column row) were most of a source's top-k (RESULTS.md, session 8). Each row's result is
    the same as alone: rows never interact."""
    n = len(requests)
    if not forms:
        return []
    n_items = forms[0].shape[1]
    stacked = np.empty((len(forms) * n, n_items), dtype=np.float32)
    for b, form in enumerate(forms):
        stacked[b * n : (b + 1) * n] = form.matrix
    history_rows = np.repeat(np.arange(n), requests.lengths())
    blocks = (np.arange(len(forms))[:, None] * n + history_rows[None, :]).ravel()
    stacked[blocks, np.tile(requests.items, len(forms))] = -np.inf
    top = top_k_indices(stacked, k, n_requests=n)
    finite = np.isfinite(np.take_along_axis(stacked, top, axis=1))
    rank = np.broadcast_to(np.arange(1, top.shape[1] + 1, dtype=np.float32), top.shape)
    rows = np.broadcast_to(np.tile(np.arange(n, dtype=np.int64), len(forms))[:, None], top.shape)
    out = []
    for b in range(len(forms)):
        block = slice(b * n, (b + 1) * n)
        kept = finite[block]
        out.append(Proposals(rows[block][kept], top[block][kept], rank[block][kept]))
    return out


@dataclass(frozen=True)
class SharedScores:
    """One score per item, the same for every request (e.g. popularity).

    ``order`` lists the items with a finite score, best first (score descending, then index),
    computed once by the source: a request's best ``k`` are the first ``k`` of it outside its
    history."""

    scores: FloatArray
    order: IntArray
    n_requests: int

    @staticmethod
    def order_of(scores: FloatArray) -> IntArray:
        finite = np.flatnonzero(np.isfinite(scores))
        order: IntArray = finite[np.lexsort((finite, -scores[finite]))].astype(np.int64)
        return order

    @property
    def shape(self) -> tuple[int, int]:
        return self.n_requests, len(self.scores)

    def dense(self) -> FloatArray:
        return np.broadcast_to(self.scores, self.shape).astype(np.float32, copy=True)

    def proposals(self, requests: Histories, k: int) -> Proposals:
        n, n_items = self.shape
        lengths = requests.lengths()
        # A row's best k lie within the first k + |history| of the order.
        head = self.order[: k + (int(lengths.max()) if n else 0)]
        rows = np.repeat(np.arange(n, dtype=np.int64), len(head))
        items = np.tile(head, n)
        keep = ~_in_sorted(rows * n_items + items, _history_keys(requests, n_items))
        rows, items = rows[keep], items[keep]
        ranks = _ranks_within_rows(rows, n)
        best = ranks < k
        return Proposals(rows[best], items[best], (ranks[best] + 1).astype(np.float32))

    def at(self, rows: IntArray, items: IntArray) -> FloatArray:
        return np.asarray(self.scores[items], dtype=np.float32)
