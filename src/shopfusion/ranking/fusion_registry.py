"""Fusion methods by the name a config uses."""

from __future__ import annotations

from shopfusion.errors import ConfigError
from shopfusion.ranking.attention import AttentionFusion
from shopfusion.ranking.fusion import AlphaBlendFusion, Fusion, LambdaMARTFusion, WeightedFusion
from shopfusion.ranking.multitask import MultiTaskFusion
from shopfusion.ranking.selection import SelectedFusion

FUSIONS: dict[str, type[Fusion]] = {
    cls.name: cls
    for cls in (
        WeightedFusion,
        AlphaBlendFusion,
        AttentionFusion,
        LambdaMARTFusion,
        MultiTaskFusion,
        SelectedFusion,
    )
}


def fusion_class(name: str) -> type[Fusion]:
    try:
        return FUSIONS[name]
    except KeyError:
        raise ConfigError(
            f"unknown fusion method {name!r}; choose from {', '.join(sorted(FUSIONS))}"
        ) from None
