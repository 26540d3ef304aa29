"""Build (or load) a benchmark search engine and rank fixed query sets generated from the catalog.

No benchmark query file is read. The sets are those of RESULTS.md, session 5, each drawn by the
committed generators with its own seed (items "by demand" = the engine's training interactions):

* ``ki_demand``  — 1,500 known-item queries, half the items by demand (seed 1001);
* ``ki_uniform`` — 1,000 known-item queries, items uniform (seed 1002);
* ``ki_typo``    — 1,000 known-item queries by demand, a typo in every query that allows one (seed 1003);
* ``personal``   — 1,000 users' last training item queried by one or two common title words, history =
  the items before it, behaviour refitted without that item so the target is unseen (seed 995).

Every query ranks the whole catalog (history excluded, ties at random); each query's reciprocal
rank at 10 is saved to ``--out`` (npz), so that two engines can be compared query by query with
``--compare A.npz B.npz`` (paired differences, 95% bootstrap intervals; several seeds' pairs
``A1 B1 A2 B2 …`` average each query over the seeds first).

    PYTHONPATH=src python benchmarks/search_generated.py --data DATA --index DIR [--config YAML] \\
        [--seed N] --out A.npz
    PYTHONPATH=src python benchmarks/search_generated.py --compare A.npz B.npz
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from shopfusion.data.layouts import load_dataset
from shopfusion.evaluation.search import build_benchmark_engine
from shopfusion.retrieval.blas import one_blas_thread
from shopfusion.search.engine import SearchEngine, _Behaviour, _target_rank, load_search_config
from shopfusion.search.index import field_texts
from shopfusion.search.training import TrainingQuery, known_item_queries, personal_queries

SETS = ("ki_demand", "ki_uniform", "ki_typo", "personal")


def query_sets(engine: SearchEngine, dataset_path: Path) -> dict[str, list[TrainingQuery]]:
    dataset = load_dataset(dataset_path)
    titles = [t or "" for t in field_texts(dataset.catalog)["title"]]
    train = dataset.interactions.histories().drop_last(1)
    demand = np.bincount(train.items, minlength=len(titles)).astype(np.float64)
    rng = np.random.default_rng
    return {
        "ki_demand": known_item_queries(titles, 1500, rng(1001), demand=demand),
        "ki_uniform": known_item_queries(titles, 1000, rng(1002)),
        "ki_typo": known_item_queries(titles, 1000, rng(1003), typo_rate=1.0, demand=demand),
        "personal": personal_queries(titles, train, 1000, rng(995)),
    }


def reciprocal_ranks(engine: SearchEngine, queries: list[TrainingQuery], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros(len(queries))
    with one_blas_thread():
        for i, q in enumerate(queries):
            scores, _, _ = engine.score_all(q.query, q.history if len(q.history) else None)
            rank = _target_rank(scores, q.positives, q.history, rng)
            out[i] = 1.0 / rank if rank <= 10 else 0.0
    return out


def evaluate(args: argparse.Namespace) -> None:
    dataset = load_dataset(args.data)
    if (args.index / "manifest.json").is_file():
        engine = SearchEngine.load(args.index)
    else:
        config = load_search_config(args.config) if args.config else None
        started = time.perf_counter()
        engine = build_benchmark_engine(dataset, args.seed, config, args.index)
        print(f"built in {time.perf_counter() - started:.0f} s")
    print(json.dumps(engine.training_, indent=1))
    sets = query_sets(engine, args.data)
    results: dict[str, np.ndarray] = {}
    for name in SETS:
        if name == "personal":  # behaviour without each user's last training item
            train = dataset.interactions.histories().drop_last(1)
            engine.behaviour_ = _Behaviour.fit(train.drop_last(1), engine.n_items_)
        started = time.perf_counter()
        results[name] = reciprocal_ranks(engine, sets[name], seed=7)
        hits = float((results[name] > 0).mean())
        print(
            f"{name}: {len(sets[name])} queries, MRR@10 {results[name].mean():.4f}, HR@10 {hits:.4f} "
            f"({time.perf_counter() - started:.0f} s)"
        )
    np.savez(args.out, **results)


def _mean_of(paths: list[Path]) -> dict[str, np.ndarray]:
    """Each query's reciprocal rank averaged over ``paths`` (engines of several seeds)."""
    runs = [dict(np.load(path)) for path in paths]
    return {name: np.mean([run[name] for run in runs], axis=0) for name in SETS}


def compare(paths: list[Path], resamples: int = 10_000) -> None:
    """Paired B − A per set and pooled over the known-item sets, with 95% bootstrap intervals over
    queries. ``paths``: A B, or A1 B1 A2 B2 … — pairs of engines built with the same seed, each
    query's figure then averaged over the seeds before the bootstrap."""
    if len(paths) < 2 or len(paths) % 2:
        raise SystemExit("--compare takes pairs of files: A B [A2 B2 ...]")
    a, b = _mean_of(paths[0::2]), _mean_of(paths[1::2])
    a["known-item (pooled)"] = np.concatenate([a[k] for k in SETS if k.startswith("ki_")])
    b["known-item (pooled)"] = np.concatenate([b[k] for k in SETS if k.startswith("ki_")])
    rng = np.random.default_rng(0)
    for name in (*SETS, "known-item (pooled)"):
        diff = b[name] - a[name]
        boots = np.array([diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(resamples)])
        low, high = np.percentile(boots, [2.5, 97.5])
        print(
            f"{name:22s} A {a[name].mean():.4f}  B {b[name].mean():.4f}  B−A {diff.mean():+.4f} "
            f"({low:+.4f} to {high:+.4f}); changed {int((diff != 0).sum())} of {len(diff)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path)
    parser.add_argument("--index", type=Path, help="engine folder: loaded if built, else built there")
    parser.add_argument("--config", type=Path, help="search config YAML for a new build")
    parser.add_argument(
        "--seed", type=int, default=0, help="engine seed of a new build (its training queries, ranker)"
    )
    parser.add_argument("--out", type=Path, help="npz of per-query reciprocal ranks")
    parser.add_argument("--compare", type=Path, nargs="+", metavar="A B", help="pairs of --out files")
    args = parser.parse_args()
    if args.compare:
        compare(args.compare)
    elif args.data and args.index and args.out:
        evaluate(args)
    else:
        parser.error("give --data, --index and --out, or --compare A B")


if __name__ == "__main__":
    main()
