"""How much a ranker could still gain on the generated known-item sets: their Bayes-optimal MRR@10.

The generated sets draw an item (``P(a)``: half uniform, half by demand for ``ki_demand``; uniform
for ``ki_uniform``) and then two to four of its typed title words (``P(q|a)``: a contiguous run or
words in title order; see :func:`shopfusion.search.titles.generative_likelihood`). Ranking every
item by ``P(a)·P(q|a)`` is the best any engine can do on them in expectation; titles that tie
(variants whose typed words are the same) are ordered at random. Queries with a typo are left out
(their likelihood needs the typo model), and so the engine's figure is given on the same queries.

    PYTHONPATH=src python benchmarks/search_bayes_ceiling.py --data DATA --ranks A.npz

``--ranks``: per-query reciprocal ranks of an engine, from ``benchmarks/search_generated.py --out``.
No benchmark query file is read.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
import numpy.typing as npt

from shopfusion.data.layouts import load_dataset
from shopfusion.search.index import field_texts
from shopfusion.search.titles import generative_likelihood
from shopfusion.search.training import known_item_queries, typed_words


def ceiling(
    titles: list[str], demand: npt.NDArray[np.float64] | None, seed: int, engine_rr: npt.NDArray[np.float64]
) -> str:
    words = [typed_words(t) if t.strip() else [] for t in titles]
    holders: dict[str, set[int]] = defaultdict(set)
    for item, item_words in enumerate(words):
        for word in item_words:
            holders[word].add(item)
    titled = np.flatnonzero([bool(t.strip()) for t in titles])
    prior = np.zeros(len(titles))
    prior[titled] = 1.0 / len(titled)
    if demand is not None:
        prior[titled] = 0.5 * prior[titled] + 0.5 * demand[titled] / demand[titled].sum()
    queries = known_item_queries(titles, len(engine_rr), np.random.default_rng(seed), demand=demand)
    ties = np.random.default_rng(0)
    engine, best = [], []
    for i, q in enumerate(queries):
        query, target = q.query.split(), int(q.positives[0])
        if not np.isfinite(generative_likelihood(words[target], query)):
            continue  # a typo: outside this model
        items = set.intersection(*(holders.get(w, set()) for w in query))
        posterior = {
            a: prior[a] * np.exp(np.nan_to_num(generative_likelihood(words[a], query), nan=-np.inf))
            for a in items
        }
        p = posterior[target]
        above = sum(v > p for v in posterior.values())
        rank = above + 1 + int(ties.integers(0, sum(v == p for v in posterior.values())))
        best.append(1.0 / rank if rank <= 10 else 0.0)
        engine.append(engine_rr[i])
    e, b = np.asarray(engine), np.asarray(best)
    return (
        f"{len(e)} of {len(engine_rr)} queries without a typo: engine MRR@10 {e.mean():.4f}, "
        f"Bayes-optimal {b.mean():.4f} (engine below it on {(e < b).sum()} queries, above on {(e > b).sum()})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--ranks", type=Path, required=True)
    args = parser.parse_args()
    dataset = load_dataset(args.data)
    titles = [t or "" for t in field_texts(dataset.catalog)["title"]]
    train = dataset.interactions.histories().drop_last(1)
    demand = np.bincount(train.items, minlength=len(titles)).astype(np.float64)
    with np.load(args.ranks) as ranks:
        print("ki_demand: ", ceiling(titles, demand, 1001, ranks["ki_demand"]))
        print("ki_uniform:", ceiling(titles, None, 1002, ranks["ki_uniform"]))


if __name__ == "__main__":
    main()
