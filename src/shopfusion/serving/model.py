"""One loaded artifact, checked before it serves, and the search index that comes with it.

:func:`load_model` refuses an artifact that does not load or does not score a smoke request, so
a broken artifact never replaces a working one (see :class:`~shopfusion.serving.service.Service`).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from shopfusion.artifact import Artifact, load_artifact
from shopfusion.data.interactions import Histories
from shopfusion.errors import ArtifactError, ShopfusionError
from shopfusion.search.api import Searcher
from shopfusion.serving.rules import CatalogView, RuleSet
from shopfusion.serving.settings import RuleSettings

log = logging.getLogger(__name__)

SEARCH_ENGINE_MODULE = "shopfusion.search.engine"

#: Opens the search index of an artifact directory (``None``: the artifact has none).
SearcherLoader = Callable[[Path], "Searcher | None"]


@dataclass(frozen=True)
class LoadedModel:
    path: Path
    artifact: Artifact
    searcher: Searcher | None
    view: CatalogView
    rules: RuleSet
    version: str
    generation: int
    cards: list[dict[str, Any]]  # per item index: what a product tile shows

    @property
    def n_items(self) -> int:
        return len(self.artifact.item_map)


def artifact_version(manifest: dict[str, Any]) -> str:
    """A short, human-readable id of an artifact: creation time plus config and data hashes."""
    data = manifest.get("data", {})
    return (
        f"{manifest.get('created_at', '?')}/{manifest.get('config_hash', '?')}/{data.get('fingerprint', '?')}"
    )


def load_searcher(artifact_dir: Path) -> Searcher | None:
    """The search index under ``ARTIFACT/search/``, or ``None`` when the artifact (or this build)
    has none; imported lazily so the service runs without the search engine installed."""
    index_dir = artifact_dir / "search"
    if not index_dir.is_dir():
        return None
    try:
        engine = importlib.import_module(SEARCH_ENGINE_MODULE)
    except ImportError:
        log.warning("%s holds a search index but this build has no search engine", artifact_dir)
        return None
    return cast(Searcher, engine.SearchEngine.load(index_dir))


def load_model(
    path: Path, rules: RuleSettings, generation: int, searcher_loader: SearcherLoader = load_searcher
) -> LoadedModel:
    """Load and smoke-test an artifact; raises :class:`ArtifactError` if it cannot serve."""
    try:
        artifact = load_artifact(path)
        searcher = searcher_loader(path)
        _smoke_test(artifact)
    except ArtifactError:
        raise
    except (ShopfusionError, OSError, ValueError, KeyError) as exc:
        raise ArtifactError(f"{path} cannot serve ({type(exc).__name__}: {exc}); retrain it") from None
    view = CatalogView.of(artifact.catalog, len(artifact.item_map))
    return LoadedModel(
        path=path,
        artifact=artifact,
        searcher=searcher,
        view=view,
        rules=RuleSet(rules, view, artifact.item_map),
        version=artifact_version(artifact.manifest),
        generation=generation,
        cards=_cards(artifact, view),
    )


def _cards(artifact: Artifact, view: CatalogView) -> list[dict[str, Any]]:
    """Product tiles, built once per artifact: reading a DataFrame row per request costs far more."""
    catalog = artifact.catalog
    n = len(artifact.item_map)

    def column(name: str, default: Any) -> list[Any]:
        if name not in catalog:
            return [default] * n
        return [
            default if v is None or (isinstance(v, float) and v != v) else v
            for v in catalog[name].tolist()[:n]
        ]

    price = [None if p is None else float(p) for p in column("price", None)]
    return [
        {
            "item_id": item_id,
            "title": str(title),
            "category": str(category),
            "brand": str(brand),
            "price": p,
            "currency": str(currency),
            "in_stock": bool(stock),
            "language": str(language),
            "image": str(image),
        }
        for item_id, title, category, brand, p, currency, stock, language, image in zip(
            artifact.item_map.ids,
            column("title", ""),
            column("category", ""),
            column("brand", ""),
            price,
            column("currency", ""),
            view.in_stock.tolist(),
            column("language", ""),
            column("image", ""),
            strict=True,
        )
    ]


def _smoke_test(artifact: Artifact) -> None:
    n_items = len(artifact.item_map)
    if artifact.model.n_items_ != n_items or len(artifact.catalog) < n_items:
        raise ArtifactError(
            f"the model knows {artifact.model.n_items_} items, the id map {n_items} and the catalog "
            f"{len(artifact.catalog)}: the artifact is inconsistent; retrain it"
        )
    requests = Histories.from_lists([[], [0]], n_items)
    scores = artifact.model.score(requests)
    if scores.shape != (2, n_items) or not np.isfinite(scores).any(axis=1).all():
        raise ArtifactError("the model returns no finite scores for a smoke request; retrain it")
