""" "Why this item?": each source's share in an item's fused score, in words.

A source's contribution is measured by ablation: the item's fused score with the source's
evidence as the model saw it, minus the fused score had that source not proposed the item
(its rank set to "not proposed", its scores to 0). This works for every fusion method, needs no
model internals, and answers the question a merchant asks: "what would change without X?".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from shopfusion.data.interactions import Histories
from shopfusion.ranking.fusion import FusionInput
from shopfusion.serving.model import LoadedModel

# Shopper-facing reasons, one per candidate source type, per language.
REASONS: dict[str, str] = {
    "popularity": "it is one of the shop's best sellers",
    "item2item": "shoppers who viewed what you viewed also chose it",
    "als": "shoppers with tastes like yours like it",
    "transition": "it is often the next thing people look at after your last item",
    "sasrec": "it fits the sequence of what you have been browsing",
    "content": "its description is close to products you looked at",
    "image": "it looks like products you looked at",
}
REASONS_ZH: dict[str, str] = {
    "popularity": "它是本店的畅销商品",
    "item2item": "浏览过相同商品的顾客也选择了它",
    "als": "和你口味相似的顾客喜欢它",
    "transition": "人们看完你上一件商品后常常接着看它",
    "sasrec": "它符合你最近的浏览顺序",
    "content": "它的描述与你看过的商品相近",
    "image": "它的外观与你看过的商品相似",
}
TEXT: dict[str, dict[str, Any]] = {
    "en": {
        "reasons": REASONS,
        "fallback": "the {name} signal favours it",
        "ranked": "Ranked #{rank} for you because {reasons}.",
        "ranked_new": "Ranked #{rank} for new visitors because {reasons}.",
        "join": "; ",
        "recent": " Based on your recent visit to “{title}”.",
        "filler": (
            "No signal proposed this item for you; it would only appear as filler ordered by popularity."
        ),
        "seen": "You have already interacted with this item, so it is not recommended to you again.",
    },
    "zh": {
        "reasons": REASONS_ZH,
        "fallback": "{name} 信号看好它",
        "ranked": "为你推荐第 {rank} 位，因为{reasons}。",
        "ranked_new": "为新访客推荐第 {rank} 位，因为{reasons}。",
        "join": "；",
        "recent": "依据你最近浏览的“{title}”。",
        "filler": "没有任何信号向你推荐这件商品；它只会作为按热度排序的补充出现。",
        "seen": "你已经浏览或购买过这件商品，所以不会再向你推荐。",
    },
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


def explain_item(model: LoadedModel, history: list[int], item: int, lang: str = "en") -> Explanation:
    text = TEXT.get(lang, TEXT["en"])
    fused_model = model.artifact.model
    requests = Histories.from_lists([history], model.n_items)
    batch, fusion_input = fused_model.candidates(requests)
    found = np.flatnonzero(batch.item == item)
    if len(batch) == 0 or len(found) == 0:
        summary = text["filler"] if item not in history else text["seen"]
        return Explanation(item, None, None, [], summary, len(history))
    pos = int(found[0])
    fused = fused_model.fusion_.predict(fusion_input)
    rank = 1 + int((fused > fused[pos]).sum())
    if fused_model.fusion_.needs_features:
        contributions = [
            _contribution(
                fused_model.fusion_.predict, fusion_input, pos, s, batch.n_per_source, float(fused[pos])
            )
            for s in range(len(batch.sources))
        ]
    else:
        # A fusion over source scores alone (weighted, alpha) is a sum of per-source terms: its own
        # decomposition is exact, and it is all the fast serving path builds.
        shares = fused_model.fusion_.contributions(fusion_input)[pos]
        contributions = [float(shares[s]) for s in range(len(batch.sources))]
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
                reason=text["reasons"].get(kind, text["fallback"].format(name=name)),
            )
        )
    sources.sort(key=lambda c: -c.contribution)
    return Explanation(
        item, rank, float(fused[pos]), sources, _summary(model, sources, rank, history, text), len(history)
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


def _summary(
    model: LoadedModel, sources: list[SourceContribution], rank: int, history: list[int], text: dict[str, Any]
) -> str:
    helping = [c for c in sources if c.contribution > 0 and c.share >= 0.1]
    if helping:
        reasons = text["join"].join(f"{c.reason} ({round(100 * c.share)}%)" for c in helping[:3])
    else:  # no single signal lifts it (typical for new visitors): name the strongest, without a share
        reasons = sources[0].reason
    summary: str = text["ranked" if history else "ranked_new"].format(rank=rank, reasons=reasons)
    catalog = model.artifact.catalog
    if history and "title" in catalog and catalog["title"].iloc[history[-1]]:
        summary += text["recent"].format(title=catalog["title"].iloc[history[-1]])
    return summary
