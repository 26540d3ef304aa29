"""Candidate sources by name, as configs and the command line refer to them."""

from __future__ import annotations

from shopfusion.errors import ConfigError
from shopfusion.retrieval.als import ALSRetriever
from shopfusion.retrieval.base import Retriever
from shopfusion.retrieval.content import ContentRetriever
from shopfusion.retrieval.image import ImageRetriever
from shopfusion.retrieval.item2item import ItemToItemRetriever
from shopfusion.retrieval.popularity import PopularityRetriever
from shopfusion.retrieval.sequential import SASRecRetriever
from shopfusion.retrieval.transition import TransitionRetriever

RETRIEVERS: dict[str, type[Retriever]] = {
    cls.name: cls
    for cls in (
        PopularityRetriever,
        ItemToItemRetriever,
        ALSRetriever,
        TransitionRetriever,
        SASRecRetriever,
        ContentRetriever,
        ImageRetriever,
    )
}


def retriever_class(name: str) -> type[Retriever]:
    try:
        return RETRIEVERS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; choose from {', '.join(sorted(RETRIEVERS))}") from None
