"""The search benchmark behind ``shopfusion evaluate search``.

A query file is a TSV with a header, in one of two layouts:

* ``qid, query, item_id`` — **known-item** search: the item the query was written for;
* ``qid, user_id, query, item_id`` — **personalized search**: the user's history is their sequence
  without its last item, which is the target.

The engine is built on the dataset with every user's last item removed (so no target of a
personalized query is ever seen in training), then every query ranks *all* items — history
excluded, ties broken at random with the harness's ranking code. Reported for the full system
(``fusion``) and for ``bm25`` and ``dense`` alone (plus ``rrf`` of the two), with bootstrap
95% intervals, and the end-to-end latency of :meth:`SearchEngine.search`.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from shopfusion import __version__
from shopfusion.data.dataset import Dataset
from shopfusion.data.interactions import Histories
from shopfusion.encoders.text import item_texts, needs_multilingual
from shopfusion.errors import DataError
from shopfusion.evaluation import metrics as m
from shopfusion.evaluation.ranking import rank_requests
from shopfusion.search.engine import SearchConfig, SearchEngine, Signals, default_encoders
from shopfusion.search.index import DenseIndex

SearchProtocol = Literal["known-item", "personalized-search"]
FloatArray = npt.NDArray[np.float32]
KS = (10, 20)
LATENCY_QUERIES = 500

_LAYOUTS: dict[tuple[str, ...], SearchProtocol] = {
    ("qid", "query", "item_id"): "known-item",
    ("qid", "user_id", "query", "item_id"): "personalized-search",
}


@dataclass(frozen=True)
class QuerySet:
    protocol: SearchProtocol
    qids: list[str]
    queries: list[str]
    items: list[str]
    users: list[str] | None
    lines: list[int]


def read_queries(path: Path) -> QuerySet:
    """Read a query TSV; any malformed line raises :class:`DataError` naming the file and line."""
    try:
        text = path.read_text(encoding="utf-8").removeprefix("\ufeff")
    except FileNotFoundError:
        raise DataError(f"{path}: query file not found; pass a TSV like known_item.tsv") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 (byte {exc.start}); re-save the file as UTF-8") from None
    lines = text.split("\n")
    header = tuple(h.strip() for h in lines[0].rstrip("\r").split("\t"))
    protocol = _LAYOUTS.get(header)
    if protocol is None:
        wanted = " or ".join("\\t".join(h) for h in _LAYOUTS)
        raise DataError(f"{path}:1: header {header!r} is not a query layout; expected {wanted}")
    width = len(header)
    columns: dict[str, list[str]] = {h: [] for h in header}
    numbers: list[int] = []
    for number, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != width:
            raise DataError(
                f"{path}:{number}: expected {width} tab-separated fields ({', '.join(header)}), "
                f"got {len(parts)}; fix or delete the line"
            )
        for name, value in zip(header, parts, strict=True):
            if not value.strip():
                raise DataError(f"{path}:{number}: field {name!r} is empty; fill it in or delete the line")
            columns[name].append(value.strip())
        numbers.append(number)
    if not numbers:
        raise DataError(f"{path}: no queries after the header; add some")
    return QuerySet(
        protocol,
        columns["qid"],
        columns["query"],
        columns["item_id"],
        columns.get("user_id"),
        numbers,
    )


def _resolve(
    ids: list[str], lookup: Callable[[str], int], kind: str, path: Path, lines: list[int]
) -> list[int]:
    out = []
    for value, line in zip(ids, lines, strict=True):
        index = lookup(value)
        if index < 0:
            raise DataError(
                f"{path}:{line}: {kind} {value!r} is not in the dataset; check --data and the file"
            )
        out.append(index)
    return out


def _rrf(*scores: FloatArray, k: float = 60.0) -> FloatArray:
    total = np.zeros_like(scores[0])
    for s in scores:
        order = np.argsort(-s, kind="stable")
        ranks = np.empty(len(s), dtype=np.float32)
        ranks[order] = np.arange(1, len(s) + 1)
        total += 1.0 / (k + ranks)
    return total


def _systems(
    engine: SearchEngine,
    query: str,
    history: npt.NDArray[np.int64],
    vectors: dict[str, FloatArray],
    dense: FloatArray | None,
) -> dict[str, FloatArray]:
    signals = engine.signals(query, history, vectors)
    fused, _, s = engine.score_all(query, history, signals=signals)
    bm25 = s.lexical(engine.config.field_weights)
    dense = dense if dense is not None else _dense(engine, s)
    return {"fusion": fused, "bm25": bm25, "dense": dense, "rrf": _rrf(bm25, dense)}


def _dense(engine: SearchEngine, s: Signals) -> FloatArray:
    """MiniLM where the engine has it (English catalogs), else the multilingual encoder."""
    name = "minilm" if "minilm" in s.dense else engine.dense_.encoders[0]
    # exact cosines: the engine's own catalog product may be approximate (int8)
    return engine.dense_.cosines(name, s.query_vectors[name])


def _minilm_baseline(engine: SearchEngine, dataset: Dataset) -> DenseIndex | None:
    """The ``dense`` baseline stays MiniLM on English catalogs even when the engine does without
    it (item vectors from the embedding cache), so its figures stay comparable across configs."""
    texts = item_texts(dataset.catalog)
    if "minilm" in engine.dense_.encoders or needs_multilingual(dataset.catalog, texts):
        return None
    return DenseIndex.build(("minilm",), texts, engine.cache)


def run_search_benchmark(
    dataset: Dataset,
    queries_path: Path,
    seed: int = 0,
    config: SearchConfig | None = None,
    engine: SearchEngine | None = None,
    latency_queries: int = LATENCY_QUERIES,
    index: Path | None = None,
) -> dict[str, Any]:
    """Build the engine on the dataset without each user's last item and evaluate every query.

    ``index``: a folder for the engine; when it holds one that this function built for the same
    dataset, seed and config it is loaded instead of rebuilt (both query files of a dataset share
    one build), else the new build is saved there."""
    query_set = read_queries(queries_path)
    histories = dataset.interactions.histories()
    train = histories.drop_last(1)
    targets = _resolve(query_set.items, dataset.item_map.get, "item_id", queries_path, query_set.lines)
    users = (
        _resolve(query_set.users, dataset.user_map.get, "user_id", queries_path, query_set.lines)
        if query_set.users is not None
        else None
    )
    started = time.perf_counter()
    loaded_from = None
    if engine is None and index is not None and (index / BENCHMARK_MARKER).is_file():
        engine = _load_benchmark_index(index, dataset, seed, config or SearchConfig())
        loaded_from = str(index)
    if engine is None:
        engine = build_benchmark_engine(dataset, seed, config, index)
    fit_seconds = time.perf_counter() - started
    rng = np.random.default_rng(seed)
    per_system: dict[str, dict[str, list[float]]] = {}
    started = time.perf_counter()
    requests: list[npt.NDArray[np.int64]] = []
    # Encoded in batches: the metrics do not depend on it, and the latency is measured on its own.
    encoded = engine.dense_.encode_queries(query_set.queries)
    baseline = _minilm_baseline(engine, dataset)
    baseline_vectors = baseline.encode_queries(query_set.queries)["minilm"] if baseline else None
    for i, query in enumerate(query_set.queries):
        history = train.row(users[i]) if users is not None else np.zeros(0, dtype=np.int64)
        requests.append(history)
        request = Histories.from_lists([history], dataset.n_items)
        target = Histories.from_lists([[targets[i]]], dataset.n_items)
        vectors = {name: values[i] for name, values in encoded.items()}
        dense = (
            baseline.vectors["minilm"] @ baseline_vectors[i]
            if baseline is not None and baseline_vectors is not None
            else None
        )
        for name, scores in _systems(engine, query, history, vectors, dense).items():
            top = rank_requests(scores[None, :].astype(np.float32), request, max(KS), rng)
            hits = m.hit_matrix(top, target)
            row = per_system.setdefault(name, {})
            for k in KS:
                for metric, value in m.ranking_metrics(hits, target.lengths(), k).items():
                    row.setdefault(metric, []).append(float(value[0]))
    eval_seconds = time.perf_counter() - started
    results: dict[str, Any] = {}
    for name, values in per_system.items():
        arrays = {metric: np.asarray(v) for metric, v in values.items()}
        out: dict[str, Any] = {metric: float(v.mean()) for metric, v in arrays.items()}
        out["ci95"] = {
            metric: [round(x, 6) for x in m.bootstrap_ci(arrays[metric], np.random.default_rng(seed))]
            for metric in ("MRR@10", "HR@10", "NDCG@10")
        }
        out["n_queries"] = len(query_set.queries)
        results[name] = out
    results["fusion"]["fit_seconds"] = round(fit_seconds, 3)
    results["fusion"]["eval_seconds"] = round(eval_seconds, 3)
    results["fusion"].update(
        measure_search_latency(engine, query_set.queries, requests, latency_queries, seed)
    )
    return {
        "dataset": dataset.name,
        "protocol": query_set.protocol,
        "split": "test",
        "queries": str(queries_path),
        "n_queries": len(query_set.queries),
        "n_items": dataset.n_items,
        "ranking": "full ranking over all items, history excluded, ties broken at random",
        "training": "engine built on every user's sequence without its last item; ranker trained on "
        "queries derived from the catalog and on held-out second-last items, never on the query file",
        "engine": engine.training_,
        "engine_loaded_from": loaded_from,
        "seed": seed,
        "results": results,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "shopfusion_version": __version__,
        "machine": f"{platform.machine()} {platform.system()} python {platform.python_version()}",
    }


BENCHMARK_MARKER = "benchmark.json"
BUILT_ON = "every user's sequence without its last item"


def build_benchmark_engine(
    dataset: Dataset, seed: int = 0, config: SearchConfig | None = None, index: Path | None = None
) -> SearchEngine:
    """The benchmark's engine: built on every user's sequence without its last item (saved to
    ``index`` with a marker when given, for :func:`run_search_benchmark` to reuse)."""
    train = dataset.interactions.histories().drop_last(1)
    engine = SearchEngine((config or SearchConfig()).model_copy(update={"seed": seed}))
    engine.fit(dataset.catalog, train)
    if index is not None:
        engine.save(index)
        marker = {"dataset": dataset.name, "n_items": dataset.n_items, "seed": seed, "built_on": BUILT_ON}
        (index / BENCHMARK_MARKER).write_text(json.dumps(marker, indent=2))
    return engine


def _load_benchmark_index(path: Path, dataset: Dataset, seed: int, config: SearchConfig) -> SearchEngine:
    marker = json.loads((path / BENCHMARK_MARKER).read_text())
    wanted = {"dataset": dataset.name, "n_items": dataset.n_items, "seed": seed, "built_on": BUILT_ON}
    if marker != wanted:
        raise DataError(f"{path}: built for {marker}, not {wanted}; pass another --index folder")
    engine = SearchEngine.load(path)
    # A config that leaves the encoders to the engine matches the ones it chose for this catalog.
    built = engine.config.model_copy(update={"encoders": engine.dense_.encoders})
    encoders = config.encoders or default_encoders(dataset.catalog)
    if built != config.model_copy(update={"seed": seed, "encoders": encoders}):
        raise DataError(f"{path}: built with another search config; pass another --index folder")
    return engine


def measure_search_latency(
    engine: SearchEngine,
    queries: list[str],
    histories: list[npt.NDArray[np.int64]],
    n: int = LATENCY_QUERIES,
    seed: int = 0,
) -> dict[str, float]:
    """Milliseconds per :meth:`SearchEngine.search` call (k=10, ranking, facets and explanations
    included) on a random sample of the queries, one at a time."""
    if not queries or n <= 0:
        return {}
    chosen = np.random.default_rng(seed).choice(len(queries), size=min(n, len(queries)), replace=False)
    engine.search(queries[int(chosen[0])], k=10)  # warm-up: lazy model loads are not a query's cost
    times = []
    for i in chosen:
        history = histories[int(i)]
        started = time.perf_counter()
        engine.search(queries[int(i)], k=10, history=history if len(history) else None, exclude_history=True)
        times.append((time.perf_counter() - started) * 1000)
    values = np.asarray(times)
    return {
        "latency_p50_ms": round(float(np.percentile(values, 50)), 2),
        "latency_p95_ms": round(float(np.percentile(values, 95)), 2),
        "latency_mean_ms": round(float(values.mean()), 2),
        "latency_queries": len(values),
    }
