"""Home feed, similar items, "why this?" and product details."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response

from shopfusion.errors import UnknownIdError
from shopfusion.serving.deps import BatcherDep, GateDep, ServiceDep, render_list, require
from shopfusion.serving.explain import Explanation
from shopfusion.serving.rules import ListFilters
from shopfusion.serving.schemas import ExplainResponse, Item, ItemId, ItemList, Reason, UserId
from shopfusion.serving.security import Role
from shopfusion.serving.service import FeedRequest

MAX_K = 100
router = APIRouter(prefix="/v1", tags=["recommendations"], dependencies=[Depends(require(Role.READ))])

K = Annotated[int, Query(ge=1, le=MAX_K, description="how many items")]
Category = Annotated[
    str | None, Query(max_length=300, description="category path prefix, e.g. 'Beauty > Skin'")
]
Brands = Annotated[list[str] | None, Query(max_length=20, description="only these brands (repeatable)")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "unknown item id"}}
BUSY: dict[int | str, dict[str, Any]] = {503: {"description": "at capacity: retry after Retry-After"}}


def _filters(category: str | None, brand: list[str] | None) -> ListFilters | None:
    if not category and not brand:
        return None
    return ListFilters(category=category or None, brands=tuple(b[:200] for b in brand or ()))


@router.get("/recommend", response_model=ItemList, responses=BUSY)
async def recommend(
    service: ServiceDep,
    batcher: BatcherDep,
    user_id: Annotated[
        UserId | None, Query(description="shopper id; absent: the feed for a new visitor")
    ] = None,
    session_id: Annotated[
        UserId | None, Query(description="anonymous session, used when there is no user_id")
    ] = None,
    k: K = 10,
    category: Category = None,
    brand: Brands = None,
) -> Response:
    """The home feed of one shopper, after the business rules (stock, boost/bury, diversity)."""
    model, user, filters = service.model, user_id or session_id, _filters(category, brand)
    # Hits are answered here on the event loop; only misses queue, in batches, for a scoring thread.
    ranked = service.cache.get(service.recommend_key(model, user, k, filters))
    cached = ranked is not None
    if ranked is None:
        ranked = await batcher.submit(FeedRequest(model, "recommend", user, k, filters))
    return render_list(ranked, "recommend", cached)


@router.get("/similar/{item_id}", response_model=ItemList, responses={**NOT_FOUND, **BUSY})
async def similar(
    service: ServiceDep,
    batcher: BatcherDep,
    item_id: Annotated[ItemId, Path()],
    k: K = 10,
    category: Category = None,
    brand: Brands = None,
) -> Response:
    """Items to show on a product page: what shoppers who looked at this one looked at next."""
    model, filters = service.model, _filters(category, brand)
    try:
        ranked = service.cache.get(service.similar_key(model, item_id, k, filters))
    except UnknownIdError as exc:
        raise HTTPException(404, str(exc)) from None
    cached = ranked is not None
    if ranked is None:
        ranked = await batcher.submit(FeedRequest(model, "similar", item_id, k, filters))
    return render_list(ranked, "similar", cached)


@router.get("/items/{item_id}", response_model=Item, responses=NOT_FOUND)
def item(service: ServiceDep, item_id: Annotated[ItemId, Path()]) -> Item:
    model = service.model
    index = model.artifact.item_map.get(item_id)
    if index < 0:
        raise HTTPException(404, f"item id {item_id!r} is not in the catalog")
    return Item(**model.cards[index])


@router.get("/explain", response_model=ExplainResponse, responses={**NOT_FOUND, **BUSY})
async def explain(
    service: ServiceDep,
    gate: GateDep,
    item_id: Annotated[ItemId, Query(description="the item to explain")],
    user_id: Annotated[UserId | None, Query(description="for whom; absent: a new visitor")] = None,
    lang: Annotated[Literal["en", "zh"], Query(description="language of the reasons")] = "en",
) -> ExplainResponse:
    """Why this item? Each signal's contribution to the item's rank, in plain words."""
    try:
        found: Explanation = await gate.run(service.explain, user_id, item_id, lang)
    except UnknownIdError as exc:
        raise HTTPException(404, str(exc)) from None
    model = service.model
    return ExplainResponse(
        item=Item(**model.cards[found.item], score=found.score),
        rank=found.rank,
        summary=found.summary,
        reasons=[Reason(**vars(c)) for c in found.sources],
        history_length=found.history_used,
        model_version=model.version,
    )
