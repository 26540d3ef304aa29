"""Columnar, index-based views of the event stream that models train on.

:class:`Interactions` is the event log as parallel arrays (dense indices, UTC
seconds, event-type codes). :class:`Histories` is what retrievers consume: one
time-ordered item sequence per row (a user, or a request), stored CSR-style.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from shopfusion.data.idmap import IdMap
from shopfusion.data.schema import EventType
from shopfusion.errors import DataError

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Histories:
    """Ragged, time-ordered item sequences: row ``i`` is ``items[indptr[i]:indptr[i+1]]``.

    ``users`` names the user index of each row (``-1`` for an anonymous request); ``kinds``,
    when known, holds the :class:`~shopfusion.data.schema.EventType` code of each item.
    """

    indptr: IntArray
    items: IntArray
    users: IntArray
    n_items: int
    kinds: npt.NDArray[np.int8] | None = None

    def __post_init__(self) -> None:
        if self.indptr.ndim != 1 or len(self.indptr) != len(self.users) + 1:
            raise DataError("Histories: indptr must have one entry more than users")
        if len(self.items) and (self.items.min() < 0 or self.items.max() >= self.n_items):
            raise DataError(f"Histories: item indices must lie in [0, {self.n_items})")
        if self.kinds is not None and len(self.kinds) != len(self.items):
            raise DataError("Histories: kinds must have one entry per item")

    @classmethod
    def from_lists(
        cls,
        sequences: Sequence[Sequence[int] | IntArray],
        n_items: int,
        users: Sequence[int] | IntArray | None = None,
        kinds: Sequence[Sequence[int] | npt.NDArray[np.int8]] | None = None,
    ) -> Histories:
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        indptr = np.zeros(len(sequences) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        items = (
            np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences])
            if len(sequences) and indptr[-1]
            else np.zeros(0, dtype=np.int64)
        )
        user_index = (
            np.asarray(users, dtype=np.int64)
            if users is not None
            else np.arange(len(sequences), dtype=np.int64)
        )
        kind_codes = None
        if kinds is not None:
            kind_codes = (
                np.concatenate([np.asarray(k, dtype=np.int8) for k in kinds])
                if len(kinds) and indptr[-1]
                else np.zeros(0, dtype=np.int8)
            )
        return cls(indptr, items, user_index, n_items, kind_codes)

    def __len__(self) -> int:
        return len(self.users)

    def row(self, i: int) -> IntArray:
        return self.items[self.indptr[i] : self.indptr[i + 1]]

    def lengths(self) -> IntArray:
        return np.diff(self.indptr)

    def rows(self, selection: IntArray | Sequence[int]) -> Histories:
        """The histories of the selected rows, in the given order."""
        sel = np.asarray(selection, dtype=np.int64)
        kinds = None if self.kinds is None else [self.row_kinds(int(i)) for i in sel]
        return Histories.from_lists([self.row(int(i)) for i in sel], self.n_items, self.users[sel], kinds)

    def row_kinds(self, i: int) -> npt.NDArray[np.int8]:
        if self.kinds is None:
            raise DataError("these histories carry no event types")
        return self.kinds[self.indptr[i] : self.indptr[i + 1]]

    def drop_last(self, n: int = 1) -> Histories:
        """Every row without its last ``n`` items (rows shorter than that become empty)."""
        lengths = np.maximum(self.lengths() - n, 0)
        keep = (
            np.concatenate(
                [np.arange(s, s + k, dtype=np.int64) for s, k in zip(self.indptr[:-1], lengths, strict=True)]
            )
            if len(self)
            else np.zeros(0, dtype=np.int64)
        )
        indptr = np.zeros(len(self) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        kinds = None if self.kinds is None else self.kinds[keep]
        return Histories(indptr, self.items[keep], self.users.copy(), self.n_items, kinds)

    def last(self, n_from_end: int = 1) -> IntArray:
        """The item ``n_from_end`` places from the end of each row (-1 where the row is too short)."""
        out = np.full(len(self), -1, dtype=np.int64)
        ok = self.lengths() >= n_from_end
        out[ok] = self.items[self.indptr[1:][ok] - n_from_end]
        return out

    def last_kind(self, n_from_end: int = 1) -> npt.NDArray[np.int8]:
        """Event type code of the item ``n_from_end`` places from the end (-1 where too short)."""
        if self.kinds is None:
            raise DataError("these histories carry no event types")
        out = np.full(len(self), -1, dtype=np.int8)
        ok = self.lengths() >= n_from_end
        out[ok] = self.kinds[self.indptr[1:][ok] - n_from_end]
        return out

    def weights(self, recency_half_life: float | None = None, binary: bool = True) -> RowWeights:
        """Each row's distinct items (ascending) and their weights: :meth:`to_csr`'s arrays, without
        building a scipy matrix: every source of a scoring call reads them (building them once
        was 4% of a lone request's call; RESULTS.md, session 7), and each ``csr_matrix`` adds
        scipy's format checks (session 18).

        Built once per setting and shared, like :meth:`to_csr`: callers must not modify them."""
        cache: dict[tuple[float | None, bool], RowWeights] | None = self.__dict__.get("_weights")
        if cache is None:
            cache = {}
            object.__setattr__(self, "_weights", cache)  # a memo, not a field: frozen stays true
        key = (recency_half_life, binary)
        if key not in cache:
            cache[key] = self._build_weights(recency_half_life, binary)
        return cache[key]

    def to_csr(self, recency_half_life: float | None = None, binary: bool = True) -> sp.csr_matrix:
        """Rows x items matrix. With ``recency_half_life`` (in positions), the most recent item
        weighs 1 and one ``half_life`` positions earlier weighs 0.5; repeats keep their max weight.

        Built once per setting from :meth:`weights` and shared, so callers must not modify it."""
        cache: dict[tuple[float | None, bool], sp.csr_matrix] | None = self.__dict__.get("_csr")
        if cache is None:
            cache = {}
            object.__setattr__(self, "_csr", cache)  # a memo, as in weights()
        key = (recency_half_life, binary)
        if key not in cache:
            w = self.weights(recency_half_life, binary)
            cache[key] = sp.csr_matrix((w.data, w.indices, w.indptr), shape=(len(self), self.n_items))
        return cache[key]

    def _build_weights(self, recency_half_life: float | None, binary: bool) -> RowWeights:
        n = len(self)
        lengths = self.lengths()
        row_ids = np.repeat(np.arange(n, dtype=np.int64), lengths)
        if recency_half_life is None:
            weights = np.ones(len(self.items), dtype=np.float32)
        else:
            from_end = np.repeat(self.indptr[1:], lengths) - 1 - np.arange(len(self.items))
            weights = np.power(0.5, from_end / recency_half_life).astype(np.float32)
        if binary or recency_half_life is not None:
            # Deduplicate by keeping the largest weight (the most recent occurrence). The kept
            # entries are sorted by (row, item), so they are the CSR arrays as they stand: building
            # through (row, col) coordinates cost a served scoring call ~10% (RESULTS.md, session 6).
            order = np.lexsort((weights, self.items, row_ids))
            r, c, w = row_ids[order], self.items[order], weights[order]
            last = np.ones(len(r), dtype=bool)
            last[:-1] = (r[1:] != r[:-1]) | (c[1:] != c[:-1])
            indptr = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(np.bincount(r[last], minlength=n), out=indptr[1:])
            return RowWeights(indptr, c[last], w[last])
        coo = sp.coo_matrix((weights, (row_ids, self.items)), shape=(n, self.n_items))
        summed = coo.tocsr().astype(np.float32)  # repeats add up
        return RowWeights(summed.indptr.astype(np.int64), summed.indices.astype(np.int64), summed.data)


@dataclass(frozen=True)
class RowWeights:
    """CSR arrays of a rows x items weight matrix: row ``r``'s items are
    ``indices[indptr[r]:indptr[r + 1]]`` (ascending, distinct) with weights ``data`` (float32)."""

    indptr: IntArray
    indices: IntArray
    data: FloatArray


@dataclass
class Interactions:
    """The event log as columns: one row per event, sorted by (user, timestamp)."""

    user: IntArray
    item: IntArray
    timestamp: npt.NDArray[np.float64]
    event_type: npt.NDArray[np.int8]
    user_map: IdMap
    item_map: IdMap
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.user)
        if not (len(self.item) == len(self.timestamp) == len(self.event_type) == n):
            raise DataError("Interactions: all columns must have the same length")
        order = np.lexsort((np.arange(n), self.timestamp, self.user))
        self.user, self.item = self.user[order], self.item[order]
        self.timestamp, self.event_type = self.timestamp[order], self.event_type[order]

    def __len__(self) -> int:
        return len(self.user)

    @property
    def n_users(self) -> int:
        return len(self.user_map)

    @property
    def n_items(self) -> int:
        return len(self.item_map)

    def histories(self, event_types: Sequence[int] | None = None, collapse_repeats: bool = True) -> Histories:
        """One time-ordered sequence per user index (users with no events get an empty row).

        With ``collapse_repeats``, consecutive events on the same item (view, click, cart,
        purchase of one product) become one entry whose kind is the strongest of them:
        recommendations are about the *next item*, and a purchase of the item just viewed
        is the outcome of that view, not a new item to predict.
        """
        mask = (
            np.ones(len(self), dtype=bool) if event_types is None else np.isin(self.event_type, event_types)
        )
        users, items = self.user[mask], self.item[mask]
        # Search events that name an item count as a view of it when ranking strengths.
        kinds = np.where(
            self.event_type[mask] == EventType.SEARCH.code, EventType.VIEW.code, self.event_type[mask]
        )
        kinds = kinds.astype(np.int8)
        if collapse_repeats and len(items):
            starts = np.ones(len(items), dtype=bool)
            starts[1:] = (users[1:] != users[:-1]) | (items[1:] != items[:-1])
            run = np.cumsum(starts) - 1
            strongest = np.zeros(int(run[-1]) + 1, dtype=np.int8)
            np.maximum.at(strongest, run, kinds)
            users, items, kinds = users[starts], items[starts], strongest
        counts = np.bincount(users, minlength=self.n_users)
        indptr = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return Histories(
            indptr, items.copy(), np.arange(self.n_users, dtype=np.int64), self.n_items, kinds.copy()
        )

    def subset(self, mask: npt.NDArray[np.bool_]) -> Interactions:
        return Interactions(
            self.user[mask],
            self.item[mask],
            self.timestamp[mask],
            self.event_type[mask],
            self.user_map,
            self.item_map,
            dict(self.metadata),
        )
