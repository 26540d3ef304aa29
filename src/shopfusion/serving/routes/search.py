"""Product search with facets."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Response

from shopfusion.search.api import SearchFilters
from shopfusion.serving.deps import SearchBatcherDep, ServiceDep, render_search, require
from shopfusion.serving.routes.recommend import MAX_K
from shopfusion.serving.schemas import SearchResponse, UserId
from shopfusion.serving.security import Role
from shopfusion.serving.service import SearchCall, SearchUnavailableError

router = APIRouter(prefix="/v1", tags=["search"], dependencies=[Depends(require(Role.READ))])


@router.get("/search", response_model=SearchResponse, responses={503: {"description": "no search index"}})
async def search(
    service: ServiceDep,
    batcher: SearchBatcherDep,
    q: Annotated[str, Query(min_length=1, max_length=200, description="what the shopper typed")],
    user_id: Annotated[UserId | None, Query(description="personalise for this shopper")] = None,
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
    category: Annotated[list[str] | None, Query(max_length=20, description="only these categories")] = None,
    brand: Annotated[list[str] | None, Query(max_length=20, description="only these brands")] = None,
    min_price: Annotated[float | None, Query(ge=0, le=1e9)] = None,
    max_price: Annotated[float | None, Query(ge=0, le=1e9)] = None,
    in_stock: Annotated[bool, Query(description="only items in stock")] = False,
    explain: Annotated[
        bool,
        Query(
            description="also return each item's signal parts (`signals`); they cost a search about "
            "a tenth more, and `/v1/explain` explains one item in words"
        ),
    ] = False,
) -> Response:
    """Ranked matches, personalised when ``user_id`` is known, with facet counts over all matches."""
    query = q.strip()
    if not query:
        raise HTTPException(422, "q is blank: type something to search for")
    if min_price is not None and max_price is not None and min_price > max_price:
        raise HTTPException(422, "min_price is above max_price")
    filters = SearchFilters(tuple(category or ()), tuple(brand or ()), min_price, max_price, in_stock)
    model = service.model
    try:
        ranked = service.cache.get(service.search_key(model, query, user_id, k, filters, explain))
    except SearchUnavailableError as exc:
        raise HTTPException(503, str(exc)) from None
    cached = ranked is not None
    if ranked is None:
        ranked = await batcher.submit(SearchCall(model, query, user_id, k, filters, explain))
    return render_search(ranked, query, cached)
