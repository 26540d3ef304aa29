"""Merge the top candidates of every named source, keeping each source's score and rank.

Keeping per-source scores and ranks is what lets fusion learn from them and lets
"why this item?" be answered later: every candidate knows who proposed it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from shopfusion.data.interactions import FloatArray, Histories, IntArray
from shopfusion.retrieval.base import Retriever
from shopfusion.retrieval.scores import DenseScores, Proposals, SourceScores, dense_proposals, union_of_keys


@dataclass(frozen=True)
class CandidateBatch:
    """Candidates of a batch of requests, grouped by request (``group_ptr`` is CSR-style).

    ``source_ranks[c, s]`` is the 1-based rank of candidate ``c`` in source ``s``'s list,
    ``n_per_source + 1`` when that source did not propose it. ``source_scores`` holds each
    source's raw score of the candidate, proposed or not.
    """

    sources: tuple[str, ...]
    row: IntArray
    item: IntArray
    source_scores: FloatArray
    source_ranks: FloatArray
    group_ptr: IntArray
    n_per_source: int

    def __len__(self) -> int:
        return len(self.item)

    @property
    def n_requests(self) -> int:
        return len(self.group_ptr) - 1

    def restricted(self, n_per_source: Mapping[str, int]) -> CandidateBatch:
        """The batch the sources named in ``n_per_source`` alone would have made (each proposing
        the number given, as when this batch was made): their columns, and only the candidates
        one of them proposed. Weighing a pipeline without a source this way spares scoring the
        requests again (:mod:`~shopfusion.ranking.pruning`)."""
        names = tuple(n_per_source)
        columns = [self.sources.index(name) for name in names]
        ranks = self.source_ranks[:, columns]
        proposed = (ranks <= self.n_per_source).any(axis=1)
        max_n = max(n_per_source.values(), default=0)
        ranks = np.minimum(ranks[proposed], np.float32(max_n + 1))  # "not proposed" is max_n + 1
        row = self.row[proposed]
        return CandidateBatch(
            sources=names,
            row=row,
            item=self.item[proposed],
            source_scores=self.source_scores[proposed][:, columns],
            source_ranks=ranks,
            group_ptr=_group_ptr(row, self.n_requests),
            n_per_source=max_n,
        )


def generate_candidates(
    sources: Mapping[str, Retriever], requests: Histories, n_per_source: int | Mapping[str, int]
) -> CandidateBatch:
    """Union of each source's top-``n`` (history excluded) for every request."""
    return merge_candidates(score_sources(sources, requests), requests, n_per_source)


def score_sources(sources: Mapping[str, Retriever], requests: Histories) -> dict[str, SourceScores]:
    """Every source's scores for the requests, each in its compact exact form (kept apart so
    ablations can reuse them)."""
    return {name: source.score_compact(requests) for name, source in sources.items()}


def merge_candidates(
    scores: Mapping[str, SourceScores | FloatArray],
    requests: Histories,
    n_per_source: int | Mapping[str, int],
) -> CandidateBatch:
    """Union of each source's top-``n`` of ``scores`` (history excluded); a plain array is read as
    the full score matrix."""
    compact = {name: DenseScores(s) if isinstance(s, np.ndarray) else s for name, s in scores.items()}
    names = tuple(compact)
    per_source = {
        name: (n_per_source if isinstance(n_per_source, int) else n_per_source[name]) for name in names
    }
    n, n_items = len(requests), requests.n_items
    max_n = max(per_source.values(), default=0)
    proposals = _proposals(compact, requests, per_source)
    # Each source's proposals as flat keys ``row * n_items + item`` with their 1-based rank; the
    # candidates are the sorted union of the keys. Working on keys rather than dense
    # (source, request, item) arrays keeps a batch's memory proportional to its candidates
    # (a 512-request batch no longer allocates a 6 x 512 x n_items rank array).
    keys: list[IntArray] = []
    key_ranks: list[FloatArray] = []
    for name in names:
        proposed = proposals[name]
        keys.append(proposed.rows * n_items + proposed.items)
        key_ranks.append(proposed.ranks)
    candidate_keys = union_of_keys(keys, n * n_items)
    cand_rows, cand_items = np.divmod(candidate_keys, n_items)
    source_ranks = np.full((len(candidate_keys), len(names)), max_n + 1, dtype=np.float32)
    for s in range(len(names)):
        source_ranks[np.searchsorted(candidate_keys, keys[s]), s] = key_ranks[s]
    source_scores = np.empty((len(cand_rows), len(names)), dtype=np.float32)
    for s, name in enumerate(names):
        source_scores[:, s] = compact[name].at(cand_rows, cand_items)
    return CandidateBatch(
        sources=names,
        row=cand_rows.astype(np.int64),
        item=cand_items.astype(np.int64),
        source_scores=source_scores,
        source_ranks=source_ranks,
        group_ptr=_group_ptr(cand_rows, n),
        n_per_source=max_n,
    )


def _group_ptr(rows: IntArray, n_requests: int) -> IntArray:
    """CSR pointer of candidates sorted by request (``rows``: the request of each)."""
    group_ptr = np.zeros(n_requests + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_requests), out=group_ptr[1:])
    return group_ptr


def _proposals(
    compact: Mapping[str, SourceScores], requests: Histories, per_source: Mapping[str, int]
) -> dict[str, Proposals]:
    """Each source's proposals; the dense sources asking for the same number share one top-k
    search (see :func:`~shopfusion.retrieval.scores.dense_proposals`)."""
    out: dict[str, Proposals] = {}
    dense_by_k: dict[int, dict[str, DenseScores]] = {}
    for name, form in compact.items():
        if isinstance(form, DenseScores):
            dense_by_k.setdefault(per_source[name], {})[name] = form
        else:
            out[name] = form.proposals(requests, per_source[name])
    for k, group in dense_by_k.items():
        out.update(zip(group, dense_proposals(list(group.values()), requests, k), strict=True))
    return out
