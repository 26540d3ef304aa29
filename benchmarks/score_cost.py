"""CPU cost of one scoring call of a trained pipeline, per batch size: why misses are batched.

    PYTHONPATH=src python benchmarks/score_cost.py --artifact DIR --sequences FILE \
        [--batches 200] [--sizes 1 2 4 8 16 32]

``FILE`` is an S3-Rec ``sequences.txt`` (``user item item ...``): each request is a random user's
history without its last two items (at most 50). For each batch size it scores ``--batches`` random
batches with ``model.score`` on one BLAS thread (as the service does) and prints process CPU time
per request and per call, and each source's share (``source.score`` alone).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from shopfusion.artifact import load_artifact
from shopfusion.data.interactions import Histories
from shopfusion.retrieval.blas import one_blas_thread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, required=True)
    parser.add_argument("--sequences", type=Path, required=True)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    args = parser.parse_args()
    artifact = load_artifact(args.artifact)
    model, items = artifact.model, artifact.item_map
    histories = []
    for line in args.sequences.read_text().splitlines():
        known = [items.to_index(x) for x in line.split()[1:-2] if x in items]
        histories.append(known[-50:])
    rng = np.random.default_rng(0)
    print("batch  ms CPU/request  ms CPU/call  per source (ms/request)")
    for size in args.sizes:
        draws = [rng.integers(0, len(histories), size) for _ in range(args.batches)]
        batches = [Histories.from_lists([histories[i] for i in rows], model.n_items_) for rows in draws]
        per_source: dict[str, float] = {}
        total = 0.0
        with one_blas_thread():
            model.score(batches[0])  # warm-up: lazy buffers
            for batch in batches:
                for name, source in model.sources_.items():
                    started = time.process_time()
                    source.score(batch)
                    per_source[name] = per_source.get(name, 0.0) + time.process_time() - started
                started = time.process_time()
                model.score(batch)
                total += time.process_time() - started
        n = size * args.batches
        sources = " ".join(f"{k} {1000 * v / n:.3f}" for k, v in per_source.items())
        print(f"{size:5d}  {1000 * total / n:14.3f}  {1000 * total / args.batches:11.2f}  {sources}")


if __name__ == "__main__":
    main()
