"""Shared route dependencies: the service, API-key checks, and result -> response conversion."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import orjson
from fastapi import Depends, Header, HTTPException, Request, Response

from shopfusion.serving.batcher import MicroBatcher
from shopfusion.serving.gate import ModelGate
from shopfusion.serving.security import KeyRing, Role
from shopfusion.serving.service import FeedRequest, Ranked, SearchCall, Service
from shopfusion.serving.settings import ServiceSettings

#: Recommendations and similar items, scored in micro-batches.
FeedBatcher = MicroBatcher[FeedRequest, Ranked]
SearchBatcher = MicroBatcher[SearchCall, Ranked]


async def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


async def get_gate(request: Request) -> ModelGate:
    gate: ModelGate = request.app.state.gate
    return gate


GateDep = Annotated[ModelGate, Depends(get_gate)]


async def get_search_batcher(request: Request) -> SearchBatcher:
    batcher: SearchBatcher = request.app.state.search_batcher
    return batcher


SearchBatcherDep = Annotated[SearchBatcher, Depends(get_search_batcher)]


async def get_batcher(request: Request) -> FeedBatcher:
    batcher: FeedBatcher = request.app.state.batcher
    return batcher


BatcherDep = Annotated[FeedBatcher, Depends(get_batcher)]
ApiKey = Annotated[
    str | None, Header(alias="X-API-Key", description="API key (ingest/admin, reads if configured)")
]


def require(role: Role) -> Callable[[Request, str | None], Awaitable[None]]:
    """A dependency that lets the request through only with a key granting ``role``."""

    # Dependencies are coroutines: FastAPI runs a plain ``def`` one in a worker thread, and that
    # hop cost more than all the rest of a cached request.
    async def check(request: Request, x_api_key: ApiKey = None) -> None:
        settings: ServiceSettings = request.app.state.settings
        if role is Role.READ and not settings.read_requires_key:
            return
        keyring: KeyRing = request.app.state.keyring
        if not x_api_key:
            raise HTTPException(
                401, f"this endpoint needs an API key with the {role.value!r} role in X-API-Key"
            )
        if role not in keyring.roles(x_api_key):
            raise HTTPException(403, f"this API key does not grant the {role.value!r} role")

    return check


def _item_cards(ranked: Ranked) -> list[dict[str, Any]]:
    """The product cards of ``ranked``'s items with their scores, as the ``Item`` schema has them."""
    cards = ranked.model.cards
    return [
        {**cards[int(i)], "score": round(float(s), 6)}
        for i, s in zip(ranked.items, ranked.scores, strict=True)
    ]


def render_list(ranked: Ranked, route: str, cached: bool) -> Response:
    """An :class:`ItemList` response of ``ranked``, rendered once and then reused.

    Written straight from the prebuilt product cards with orjson: building and validating ten
    pydantic models per list cost more than scoring it in a batch. ``tests/serving`` checks the
    bytes against ``ItemList``'s own rendering."""
    body = ranked.rendered.get((route, cached))
    if body is None:
        body = orjson.dumps(
            {"items": _item_cards(ranked), "model_version": ranked.model.version, "cached": cached}
        )
        ranked.rendered[(route, cached)] = body
    return Response(body, media_type="application/json")


def render_search(ranked: Ranked, query: str, cached: bool) -> Response:
    """A :class:`SearchResponse` of ``ranked`` (the answer to ``query``), rendered like
    :func:`render_list`: pydantic models of the items and facets cost about as much as the
    service's own part of a search. ``tests/serving`` checks the bytes against the schema."""
    body = ranked.rendered.get(("search", cached))
    if body is None:
        body = orjson.dumps(
            {
                "items": _item_cards(ranked),
                "model_version": ranked.model.version,
                "cached": cached,
                "query": query,
                "corrected_query": ranked.corrected_query,
                "facets": {
                    name: [{"value": v, "count": c} for v, c in values]
                    for name, values in ranked.facets.items()
                },
                "signals": ranked.signals,
            }
        )
        ranked.rendered[("search", cached)] = body
    return Response(body, media_type="application/json")
