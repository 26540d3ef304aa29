"""Where a search's time goes: ``SearchEngine.search_many`` on a sample of a query file, one query
(or ``--batch`` queries) at a time, with a wall-clock timer around each stage (or under cProfile with
``--cprofile``); every figure is per query.

    PYTHONPATH=src python benchmarks/search_profile.py --index DIR --queries FILE [--n 300] [--batch 2]

Stage timers wrap the engine's own methods, so nested stages (indented) are part of their parent;
the first two queries are a warm-up (lazy title index, encoder load) and are not timed.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import os
import pstats
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shopfusion.ranking.fusion import LambdaMARTFusion
from shopfusion.search import engine as search_engine
from shopfusion.search.api import SearchRequest
from shopfusion.search.index import DenseIndex, LexicalIndex, query_vectors
from shopfusion.search.intent import CategoryIntent
from shopfusion.search.titles import TitleIndex

#: (owner, method, label): the stages timed; labels starting with spaces are nested.
STAGES: list[tuple[Any, str, str]] = [
    (search_engine.SearchEngine, "signals", "signals"),
    (LexicalIndex, "token_scores", "  lexical per-token BM25"),
    (LexicalIndex, "ngram_scores", "  character n-gram BM25"),
    (DenseIndex, "encode_queries_cached", "query encoding (USE)"),
    (DenseIndex, "similarities", "dense product"),
    (CategoryIntent, "predict", "  category intent"),
    (search_engine.SearchEngine, "_candidates", "candidates"),
    (DenseIndex, "cosines", "  candidates' exact cosines"),
    (search_engine.SearchEngine, "_features", "features"),
    (TitleIndex, "match", "  title match"),
    (TitleIndex, "typed_match", "  typed-word match"),
    (CategoryIntent, "item_match", "  candidates' intent match"),
    (LambdaMARTFusion, "predict", "ranker predictions (ranking + ablation)"),
    (search_engine.SearchEngine, "_explain", "explanations"),
    (search_engine._Catalog, "facets", "facets"),
]


def _timed(totals: dict[str, float], label: str, method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            totals[label] += time.perf_counter() - started

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--queries", type=Path, required=True)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument("--no-explain", action="store_true")
    parser.add_argument(
        "--served",
        action="store_true",
        help="as the service searches: a random history (1-20 items) per query, k=30 without "
        "explanations (a plain search; with --explain-kept the top 10 are then explained, as for "
        "a search with explain=true)",
    )
    parser.add_argument("--explain-kept", action="store_true", help="with --served: explain the top 10")
    parser.add_argument(
        "--batch",
        type=int,
        default=1,
        help="searches per engine call (the service batches the searches that queue)",
    )
    args = parser.parse_args()
    engine = search_engine.SearchEngine.load(args.index)
    table = pd.read_csv(args.queries, sep="\t")
    chosen = np.random.default_rng(0).choice(len(table), size=min(args.n, len(table)), replace=False)
    queries = [str(table["query"].iloc[int(i)]) for i in chosen]
    rng = np.random.default_rng(1)
    histories = [
        rng.choice(engine.n_items_, size=int(rng.integers(1, 21)), replace=False) if args.served else None
        for _ in queries
    ]
    for query in queries[:2]:
        engine.search(query, k=10)
    query_vectors.clear()  # every timed query is encoded, as a first-seen query is
    totals: dict[str, float] = defaultdict(float)
    if not args.cprofile:
        for owner, name, label in STAGES:
            setattr(owner, name, _timed(totals, label, getattr(owner, name)))
    profiler = cProfile.Profile() if args.cprofile else None
    times: list[float] = []
    if profiler is not None:
        profiler.enable()
    for start in range(0, len(queries), args.batch):
        requests = [
            # Service.search: spares for the business rules, the kept ones explained
            SearchRequest(query, 30, history, explain=False)
            if args.served
            else SearchRequest(query, 10, explain=not args.no_explain)
            for query, history in zip(
                queries[start : start + args.batch], histories[start : start + args.batch], strict=True
            )
        ]
        started = time.perf_counter()
        for result in engine.search_many(requests):
            if args.served and args.explain_kept:
                result.explain(result.items[:10])
        times += [(time.perf_counter() - started) * 1000 / len(requests)] * len(requests)
    if profiler is not None:
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
        print(out.getvalue())
    values = np.asarray(times)
    p50, p95 = np.percentile(values, [50, 95])
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    mean = values.mean()
    print(f"batches of {args.batch}; per query:")
    print(f"{len(values)} queries: p50 {p50:.2f} ms, p95 {p95:.2f} ms, mean {mean:.2f} ms; load {load}")
    for _, _, label in STAGES:
        if label in totals:
            print(f"{label:42s} {1000 * totals[label] / len(values):7.3f} ms a query")


if __name__ == "__main__":
    main()
