"""Serve only the sources a shop's held-out lists show a need for.

Each source costs every served request a catalog-wide scoring and top-k — most of a cache miss's
CPU (RESULTS.md, session 8) — and on a given shop some add nothing measurable on top of the others.
Which ones depends on the shop, so it is learned like the fusion method is: by backward elimination
on the ``select`` fusion's selection requests (held-out *training* targets, whole candidate lists as
served, never an evaluation target). Each round weighs the pipeline without each remaining source
and drops the one whose removal costs least, if that cost is within one standard error of the
paired per-request differences — the one-standard-error rule: the cheaper pipeline, unless the data
show the dearer one ranks better. It stops when every removal costs more.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from shopfusion.data.interactions import FloatArray

#: NDCG@10 of each selection request, for the pipeline with the sources given (name: how many
#: candidates each proposes) and a random seed.
GainsOf = Callable[[Mapping[str, int], int], FloatArray]


def prune_sources(
    per_source: Mapping[str, int], gains_of: GainsOf, seed: int
) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The sources to keep, and a report of every round (what each removal cost, against its
    standard error)."""
    kept = dict(per_source)
    current = gains_of(kept, seed)
    report: dict[str, Any] = {"ndcg@10": round(float(current.mean()), 6), "rounds": []}
    while len(kept) > 1:
        trials = {name: gains_of({n: k for n, k in kept.items() if n != name}, seed) for name in kept}
        cheapest = max(sorted(trials), key=lambda name: float(trials[name].mean()))
        loss = current - trials[cheapest]
        cost = float(loss.mean())
        error = float(loss.std(ddof=1) / np.sqrt(len(loss))) if len(loss) > 1 else float("inf")
        dropped = cost <= error
        report["rounds"].append(
            {
                "ndcg@10_without": {name: round(float(g.mean()), 6) for name, g in trials.items()},
                "cheapest": cheapest,
                "cost": round(cost, 6),
                "standard_error": round(error, 6),
                "dropped": dropped,
            }
        )
        if not dropped:
            break
        del kept[cheapest]
        current = trials[cheapest]
    report["kept"] = list(kept)
    return tuple(kept), report
