"""Candidate sources behind one contract (see :mod:`shopfusion.retrieval.base`)."""

from shopfusion.retrieval.als import ALSRetriever
from shopfusion.retrieval.base import Candidates, Retriever, TrainData
from shopfusion.retrieval.item2item import ItemToItemRetriever
from shopfusion.retrieval.popularity import PopularityRetriever
from shopfusion.retrieval.registry import RETRIEVERS, retriever_class

__all__ = [
    "RETRIEVERS",
    "ALSRetriever",
    "Candidates",
    "ItemToItemRetriever",
    "PopularityRetriever",
    "Retriever",
    "TrainData",
    "retriever_class",
]
