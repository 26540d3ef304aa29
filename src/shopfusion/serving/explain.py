""" "Why this item?": each source's share in an item's fused score, in words.

A source's contribution is measured by ablation: the item's fused score with the source's
evidence as the model saw it, minus the fused score had that source not proposed the item
(its rank set to "not proposed", its scores to 0). This works for every fusion method, needs no
model internals, and answers the question a merchant asks: "what would change without X?".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shopfusion.data.interactions import Histories
from shopfusion.ranking.fusion import FusionInput
from shopfusion.serving.model import LoadedModel

# Shopper-facing reasons, one per candidate source type.
REASONS: dict[str, str] = {
    "popularity": "it is one of the shop's best sellers",
    "item2item": "shoppers who viewed what you viewed also chose it",
    "als": "shoppers with tastes like yours like it",
    "transition": "it is often the next thing people look at after your last item",
    "sasrec": "it fits the sequence of what you have been browsing",
    "content": "its description is close to products you looked at",
    "image": "it looks like products you looked at",
}


@dataclass(frozen=True)
class SourceContribution:
    source: str
    rank: int | None  # the rank this source gave the item (None: not proposed)
    contribution: float  # fused score with the source minus without it
    share: float  # fraction of the positive contributions, 0..1
    reason: str


@dataclass(frozen=True)
class Explanation:
    item: int
    rank: int | None  # among the model's candidates, before business rules; None: not a candidate
    score: float | None
    sources: list[SourceContribution]
    summary: str
    history_used: int


def explain_item(model: LoadedModel, history: list[int], item: int) -> Explanation:
    fused_model = model.artifact.model
    requests = Histories.from_lists([history], model.n_items)
    batch, fusion_input = fused_model.candidates(requests)
    found = np.flatnonzero(batch.item == item)
    if len(batch) == 0 or len(found) == 0:
        summary = (
            "No signal proposed this item for you; it would only appear as filler ordered by popularity."
            if item not in history
            else "You have already interacted with this item, so it is not recommended to you again."
        )
        return Explanation(item, None, None, [], summary, len(history))
    pos = int(found[0])
    fused = fused_model.fusion_.predict(fusion_input)
    rank = 1 + int((fused > fused[pos]).sum())
    contributions = [
        _contribution(
            fused_model.fusion_.predict, fusion_input, pos, s, batch.n_per_source, float(fused[pos])
        )
        for s in range(len(batch.sources))
    ]
    positive = sum(max(c, 0.0) for c in contributions) or 1.0
    sources = []
    for s, name in enumerate(batch.sources):
        source_rank = float(batch.source_ranks[pos, s])
        kind = model.artifact.config.sources[s].kind if s < len(model.artifact.config.sources) else name
        sources.append(
            SourceContribution(
                source=name,
                rank=int(source_rank) if source_rank <= batch.n_per_source else None,
                contribution=round(contributions[s], 6),
                share=round(max(contributions[s], 0.0) / positive, 4),
                reason=REASONS.get(kind, f"the {name} signal favours it"),
            )
        )
    sources.sort(key=lambda c: -c.contribution)
    return Explanation(
        item, rank, float(fused[pos]), sources, _summary(model, sources, rank, history), len(history)
    )


def _contribution(
    predict: object, data: FusionInput, pos: int, source: int, n_per_source: int, base: float
) -> float:
    features = data.features.copy()
    names = data.feature_names
    name = data.sources[source]
    row = features[pos]
    was_proposed = row[names.index(f"{name}_rank")] <= n_per_source
    row[names.index(f"{name}_score")] = 0.0
    row[names.index(f"{name}_score_rel")] = 0.0
    row[names.index(f"{name}_rank")] = n_per_source + 1
    if "n_proposers" in names and was_proposed:
        row[names.index("n_proposers")] -= 1
    if "best_rank" in names:
        ranks = [row[names.index(f"{s}_rank")] for s in data.sources]
        row[names.index("best_rank")] = min(ranks, default=n_per_source + 1)
    ablated = FusionInput(features, names, data.sources, data.group_ptr)
    scores = predict(ablated)  # type: ignore[operator]
    return base - float(scores[pos])


def _summary(model: LoadedModel, sources: list[SourceContribution], rank: int, history: list[int]) -> str:
    helping = [c for c in sources if c.contribution > 0 and c.share >= 0.1]
    if not helping:
        helping = sources[:1]
    reasons = "; ".join(f"{c.reason} ({round(100 * c.share)}%)" for c in helping[:3])
    text = f"Ranked #{rank} for you because {reasons}."
    if history:
        last = model.artifact.catalog["title"].iloc[history[-1]] if "title" in model.artifact.catalog else ""
        if last:
            text += f" Based on your recent visit to “{last}”."
    else:
        text = text.replace("for you", "for new visitors")
    return text
