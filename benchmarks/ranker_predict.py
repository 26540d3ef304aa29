"""LightGBM's predictor against the same model compiled to machine code (shopfusion.ranking.compiled):
microseconds per call for a served search's row counts, and the largest difference of the scores.

    PYTHONPATH=src python benchmarks/ranker_predict.py --model ARTIFACT/search/ranker.txt [--calls 500]

Rows are random (10% missing values) with the model's number of features; both predict on one thread.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from shopfusion.ranking.compiled import CompiledTrees


def per_call_us(predict: Callable[[], Any], calls: int) -> float:
    predict()
    started = time.perf_counter()
    for _ in range(calls):
        predict()
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a LightGBM model text file")
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    text = args.model.read_text()
    booster = lgb.Booster(model_str=text)
    with tempfile.TemporaryDirectory() as scratch:  # a cold cache: the compile time is measured
        started = time.perf_counter()
        compiled = CompiledTrees.of(text, booster, Path(scratch))
        compile_s = time.perf_counter() - started
    if compiled is None:
        raise SystemExit("lleaves is not installed (pip install 'shopfusion[fast]') or compiling failed")
    print(f"{booster.num_trees()} trees, {booster.num_feature()} features; compiled in {compile_s:.1f} s")
    rng = np.random.default_rng(0)
    print("rows | LightGBM µs | compiled µs | max |difference|")
    for rows in (1, 10, 60, 250, 1000):
        x = rng.random((rows, booster.num_feature())).astype(np.float32)
        x[rng.random(x.shape) < 0.1] = np.nan
        difference = np.abs(booster.predict(x, num_threads=1) - compiled.predict(x)).max()
        lgb_us = per_call_us(partial(booster.predict, x, num_threads=1), args.calls)
        compiled_us = per_call_us(partial(compiled.predict, x), args.calls)
        print(f"{rows} | {lgb_us:.0f} | {compiled_us:.0f} | {difference:.1e}")


if __name__ == "__main__":
    main()
