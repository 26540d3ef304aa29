"""Data writers shared by tests (importable as ``tests_support``; see pythonpath in pyproject)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shopfusion.retrieval.scores import Proposals
from shopfusion.search.api import Searcher, SearchRequest, SearchResult


def write_s3rec_folder(folder: Path, n_users: int = 80, seed: int = 0) -> Path:
    """Users buy within one of four item groups, in order: sequential signal a model can find."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    lines = []
    for user in range(1, n_users + 1):
        group = user % 4
        start = int(rng.integers(0, 5))
        items = [1 + group * 10 + (start + j) % 10 for j in range(int(rng.integers(5, 9)))]
        lines.append(" ".join(map(str, [user, *items])))
    (folder / "sequences.txt").write_text("\n".join(lines) + "\n")
    titles = "\n".join(f"{i}\tB{i:05d}\tProduct &amp; {i}" for i in range(1, 41))
    (folder / "items.tsv").write_text("item_id\tasin\ttitle\n" + titles + "\n")
    return folder


def write_yoochoose_folder(folder: Path, n_sessions: int = 300, seed: int = 0, buys: bool = True) -> Path:
    """A yoochoose-style stream (session_id, item_id, timestamp in ms): sessions browse one of four
    item groups in order; with ``buys``, a third of them end by buying an item of their group, and the
    bought item is always an "even" item: a convert head can learn what sells."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    clicks, bought = ["session_id\titem_id\ttimestamp"], ["session_id\titem_id\ttimestamp"]
    clock = 1_396_720_000_000
    for session in range(1, n_sessions + 1):
        group = session % 4
        start = int(rng.integers(0, 10))
        for j in range(int(rng.integers(3, 7))):
            clock += int(rng.integers(1_000, 60_000))
            clicks.append(f"{session}\t{100 + group * 10 + (start + j) % 10}\t{clock}")
        if buys and session % 3 == 0:
            clock += 5_000
            item = 100 + group * 10 + 2 * int(rng.integers(0, 5))
            clicks.append(f"{session}\t{item}\t{clock}")
            bought.append(f"{session}\t{item}\t{clock + 1_000}")
    (folder / "interactions.tsv").write_text("\n".join(clicks) + "\n")
    if buys:
        (folder / "buys.tsv").write_text("\n".join(bought) + "\n")
    return folder


def proposed(proposals: Proposals) -> set[tuple[int, int, float]]:
    """A source's proposals as a set of (request row, item, rank): the forms list them in any order."""
    return set(zip(proposals.rows.tolist(), proposals.items.tolist(), proposals.ranks.tolist(), strict=True))


def search_alone(searcher: Searcher, request: SearchRequest) -> SearchResult:
    """``request`` through ``searcher.search`` (one search, no batch)."""
    return searcher.search(
        request.query,
        k=request.k,
        history=request.history,
        filters=request.filters,
        exclude_history=request.exclude_history,
        explain=request.explain,
    )
