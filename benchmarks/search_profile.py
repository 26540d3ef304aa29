"""Where a search's time goes: ``SearchEngine.search(q, k=10)`` on a sample of a query file, one
query at a time, with a wall-clock timer around each stage (or under cProfile with ``--cprofile``).

    PYTHONPATH=src python benchmarks/search_profile.py --index DIR --queries FILE [--n 300]

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
from shopfusion.search.index import DenseIndex, LexicalIndex, query_vector
from shopfusion.search.intent import CategoryIntent
from shopfusion.search.titles import TitleIndex

#: (owner, method, label): the stages timed; labels starting with spaces are nested.
STAGES: list[tuple[Any, str, str]] = [
    (search_engine.SearchEngine, "signals", "signals"),
    (LexicalIndex, "token_scores", "  lexical per-token BM25"),
    (LexicalIndex, "ngram_scores", "  character n-gram BM25"),
    (DenseIndex, "encode_query", "  query encoding (USE)"),
    (DenseIndex, "similarities", "  dense mat-vec"),
    (CategoryIntent, "predict", "  category intent"),
    (CategoryIntent, "item_match", "  intent per item"),
    (search_engine.SearchEngine, "_candidates", "candidates"),
    (search_engine.SearchEngine, "_features", "features"),
    (TitleIndex, "match", "  title match"),
    (TitleIndex, "typed_match", "  typed-word match"),
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
        "explanations, then the top 10 explained",
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
    query_vector.cache_clear()  # every timed query is encoded, as a first-seen query is
    totals: dict[str, float] = defaultdict(float)
    if not args.cprofile:
        for owner, name, label in STAGES:
            setattr(owner, name, _timed(totals, label, getattr(owner, name)))
    profiler = cProfile.Profile() if args.cprofile else None
    times = []
    if profiler is not None:
        profiler.enable()
    for query, history in zip(queries, histories, strict=True):
        started = time.perf_counter()
        if args.served:  # Service.search: spares for the business rules, the kept ones explained
            result = engine.search(query, k=30, history=history, explain=False)
            result.explain(result.items[:10])
        else:
            engine.search(query, k=10, explain=not args.no_explain)
        times.append((time.perf_counter() - started) * 1000)
    if profiler is not None:
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
        print(out.getvalue())
    values = np.asarray(times)
    p50, p95 = np.percentile(values, [50, 95])
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    mean = values.mean()
    print(f"{len(values)} queries: p50 {p50:.2f} ms, p95 {p95:.2f} ms, mean {mean:.2f} ms; load {load}")
    for _, _, label in STAGES:
        if label in totals:
            print(f"{label:42s} {1000 * totals[label] / len(values):7.3f} ms a query")


if __name__ == "__main__":
    main()
