"""Why the fusion is chosen on whole candidate lists: score fusion methods two ways.

Fits the default pipeline's sources once on the test split's training part minus each user's
last item (the S3-Rec validation target), dumps every held-out request's *whole* candidate list,
then for each method: fit on 80% of the requests (negatives subsampled as in training) and report
NDCG@10 on the other 20% both subsampled and whole; finally refit on all and score the test
candidates (the test target is used only for that last column, never to choose).

    python benchmarks/fusion_lists.py --data ../shared/datasets/amazon-beauty/s3rec --out /tmp/fl
    python benchmarks/fusion_lists.py --out /tmp/fl --methods weighted,lambdamart   # reuse the dump
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from shopfusion.config import default_config
from shopfusion.data.interactions import Histories
from shopfusion.data.layouts import load_dataset
from shopfusion.data.splits import leave_one_out
from shopfusion.ranking.candidates import generate_candidates
from shopfusion.ranking.features import ItemStatistics, build_features, feature_names
from shopfusion.ranking.fusion import FusionInput
from shopfusion.ranking.fusion_registry import fusion_class
from shopfusion.ranking.groups import group_ids, ndcg_at_k, subsample_groups
from shopfusion.ranking.pipeline import HeldOut, build_source
from shopfusion.ranking.selection import take_groups
from shopfusion.retrieval.base import Retriever, TrainData


def dump(
    sources: dict[str, Retriever], requests: Histories, targets: np.ndarray, stats: ItemStatistics, out: Path
) -> None:
    per_source = {s.name: s.candidates for s in default_config().sources}
    feats, labels, sizes = [], [], []
    for start in range(0, len(requests), 512):
        rows = np.arange(start, min(start + 512, len(requests)))
        batch_requests = requests.rows(rows)
        batch = generate_candidates(sources, batch_requests, per_source)
        feats.append(build_features(batch, batch_requests, stats))
        labels.append(batch.item == targets[rows][batch.row])
        sizes.append(np.diff(batch.group_ptr))
    names = np.array(feature_names(tuple(sources)))
    np.savez(
        out,
        features=np.concatenate(feats),
        labels=np.concatenate(labels),
        sizes=np.concatenate(sizes),
        names=names,
    )


def make_dumps(data: Path, out: Path) -> None:
    cfg = default_config()
    dataset = load_dataset(data)
    task = leave_one_out(dataset.interactions.histories()).test
    holdout = HeldOut.of(task.train, cfg, np.random.default_rng(cfg.seed))
    held = {s.name: build_source(s).fit(TrainData(holdout.held_in, dataset.catalog)) for s in cfg.sources}
    dump(
        held,
        holdout.requests,
        holdout.targets,
        ItemStatistics.fit(holdout.held_in, dataset.catalog),
        out / "val.npz",
    )
    full = TrainData(task.train, dataset.catalog)
    served = {s.name: build_source(s).fit(full) if s.refit else held[s.name] for s in cfg.sources}
    stats = ItemStatistics.fit(task.train, dataset.catalog)
    dump(served, task.requests, task.targets.last(1), stats, out / "test.npz")


def load(path: Path) -> tuple[FusionInput, np.ndarray]:
    with np.load(path) as z:
        names = tuple(str(n) for n in z["names"])
        sources = tuple(n[: -len("_score")] for n in names if n.endswith("_score") and "_score_" not in n)
        ptr = np.concatenate([[0], np.cumsum(z["sizes"])]).astype(np.int64)
        return FusionInput(z["features"], names, sources, ptr), z["labels"]


def compare(out: Path, methods: list[str]) -> None:
    val, val_labels = load(out / "val.npz")
    test, test_labels = load(out / "test.npz")
    rng = np.random.default_rng(0)
    keep, ptr = subsample_groups(val_labels, val.group_ptr, val.column("best_rank"), 100, rng)
    sub = FusionInput(val.features[keep], val.feature_names, val.sources, ptr)
    sub_labels = val_labels[keep]
    n_groups = len(val.group_ptr) - 1
    held = np.random.default_rng(1).random(n_groups) < 0.2
    has_positive = np.bincount(group_ids(val.group_ptr)[val_labels], minlength=n_groups) > 0
    whole_check = take_groups(val, val_labels, held)
    fit_part = take_groups(sub, sub_labels, ~held[has_positive])
    sub_check = take_groups(sub, sub_labels, held[has_positive])
    print("| method | val NDCG@10, subsampled lists | val NDCG@10, whole lists | test NDCG@10 (candidates) |")
    print("|---|---|---|---|")
    for method in methods:
        started = time.perf_counter()
        model = fusion_class(method)().fit(*fit_part, np.random.default_rng(0))
        on_sub = ndcg_at_k(model.predict(sub_check[0]), sub_check[1], sub_check[0].group_ptr)
        on_whole = ndcg_at_k(model.predict(whole_check[0]), whole_check[1], whole_check[0].group_ptr)
        final = fusion_class(method)().fit(sub, sub_labels, np.random.default_rng(0))
        on_test = ndcg_at_k(final.predict(test), test_labels, test.group_ptr)
        seconds = time.perf_counter() - started
        print(f"| {method} | {on_sub:.4f} | {on_whole:.4f} | {on_test:.4f} | ({seconds:.0f} s)")
    for source in test.sources:
        alone_val = ndcg_at_k(
            whole_check[0].column(f"{source}_score"), whole_check[1], whole_check[0].group_ptr
        )
        alone_test = ndcg_at_k(test.column(f"{source}_score"), test_labels, test.group_ptr)
        print(f"| {source} alone | | {alone_val:.4f} | {alone_test:.4f} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, help="dataset folder; omit to reuse the dumps in --out")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--methods", default="weighted,lambdamart")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.data is not None:
        make_dumps(args.data, args.out)
    compare(args.out, args.methods.split(","))


if __name__ == "__main__":
    main()
