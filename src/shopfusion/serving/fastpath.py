"""Cache hits of the two hottest routes, answered without FastAPI's routing and validation.

A cached feed or similar-items list is a dictionary look-up and a prerendered body, yet FastAPI's
dependency solving and query validation cost several times that. This middleware sits inside
:class:`~shopfusion.serving.guard.GuardMiddleware` (rate limits, shedding, metrics and the access
log still apply) and answers a ``GET /v1/recommend`` or ``GET /v1/similar/{item_id}`` itself only
when the request is unambiguously valid, needs no key and hits the cache: only ``user_id``,
``session_id`` and ``k`` (each at most once, ``k`` plain digits within bounds, ids as the API
accepts them). Anything else — a filter, a bad value, a miss, an unknown item — goes to the routes
unchanged, which decide as they always did. The body is the routes' own rendering of the entry.

A plain request that misses the cache needs the model; when the model gate would refuse it, it is
refused here (503), before FastAPI's routing: a refusal there cost several times one here, and
under overload the refusals are most of the requests. Otherwise it joins the micro-batcher from
here too, and its list is rendered as the route would render it: FastAPI's routing, dependency
solving and validation were about a quarter of the CPU of a scored request (py-spy, RESULTS.md,
session 5). A request the model cannot answer (an unknown id found only while scoring, ...) goes
to the route, which answers with its usual error.

A plain ``GET /v1/search`` (only ``q``, ``user_id`` and ``k``; ``q`` within the route's bounds and
not blank) is served the same way: a hit from the cache, a miss through the search batcher, whose
gate refuses (503) as the route's would. FastAPI's routing, dependency solving and validation
were ~5% of a search worker's CPU samples (py-spy), and without them the search p99 at 200/s was
lower in each of three alternating runs against the routed code (RESULTS.md, session 11).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl

from fastapi import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from shopfusion.errors import ShopfusionError
from shopfusion.search.api import SearchFilters
from shopfusion.serving.batcher import MicroBatcher
from shopfusion.serving.deps import render_list, render_search
from shopfusion.serving.gate import ModelGate, drawn_early
from shopfusion.serving.guard import prerendered, reply
from shopfusion.serving.service import FeedRequest, Key, Ranked, SearchCall, Service

_ID = re.compile(r"[^\r\n\t]{1,256}")  # schemas.UserId / ItemId, matched whole (fullmatch)
_SIMILAR = "/v1/similar/"
_SEARCH = "/v1/search"
MAX_QUERY_CHARS = 200  # the search route's bound on q
_NO_FILTERS = SearchFilters()  # what the route builds from a request without filters


@dataclass(frozen=True)
class RouteLabel:
    """What the guard reads off ``scope["route"]`` for its metrics label and access log."""

    path: str


_ROUTES = {
    "recommend": RouteLabel("/v1/recommend"),
    "similar": RouteLabel("/v1/similar/{item_id}"),
    "search": RouteLabel(_SEARCH),
}
_MODEL_BUSY = prerendered(503, "the model is at capacity; retry shortly", {"Retry-After": "1"})
_LOOKUP = "shopfusion.plain_list"  # scope key of :meth:`PlainLists.lookup`'s answer


@dataclass(frozen=True)
class PlainRead:
    """A plain ``recommend`` / ``similar`` / ``search`` request: its route, cache key, subject
    (the shopper, or the item of ``similar``), ``k`` and, for a search, the query (stripped)."""

    name: Literal["recommend", "similar", "search"]
    key: Key
    subject: str | None
    k: int
    query: str = ""


class PlainLists:
    """Which requests are plain ``recommend`` / ``similar`` / ``search`` reads, and their cache keys."""

    def __init__(self, service: Service, max_k: int) -> None:
        self.service, self.max_k = service, max_k

    def is_hit(self, scope: Scope) -> bool:
        """Whether the request is a plain read whose list is cached (a peek: nothing counted)."""
        found = self.lookup(scope) if scope["type"] == "http" and scope["method"] == "GET" else None
        return found is not None and found.key in self.service.cache

    def lookup(self, scope: Scope) -> PlainRead | None:
        """The route (``recommend`` | ``similar`` | ``search``) and cache key of a plain, valid request.

        Kept in the scope: under overload the guard's exemption check and the fast path both ask,
        and the key costs a query-string parse and a keyed hash of the shopper's id."""
        if _LOOKUP not in scope:
            scope[_LOOKUP] = self._lookup(scope)
        found: PlainRead | None = scope[_LOOKUP]
        return found

    def _lookup(self, scope: Scope) -> PlainRead | None:
        if self.service.settings.read_requires_key:
            return None
        params = _params(scope["query_string"])
        path: str = scope["path"]
        if path == _SEARCH:
            return self._search(params)
        if params is None or not params.keys() <= {"user_id", "session_id", "k"}:
            return None
        k = _k(params.pop("k", "10"), self.max_k)
        if k is None or any(not _ID.fullmatch(v) for v in params.values()):
            return None
        try:
            model = self.service.model
            if path == "/v1/recommend":
                user = params.get("user_id") or params.get("session_id")
                return PlainRead("recommend", self.service.recommend_key(model, user, k, None), user, k)
            item = path[len(_SIMILAR) :]
            if path.startswith(_SIMILAR) and "/" not in item and not params and _ID.fullmatch(item):
                return PlainRead("similar", self.service.similar_key(model, item, k, None), item, k)
        except ShopfusionError:  # not ready, unknown item: the routes answer
            return None
        return None

    def _search(self, params: dict[str, str] | None) -> PlainRead | None:
        if params is None or "q" not in params or not params.keys() <= {"q", "user_id", "k"}:
            return None
        raw = params["q"]
        query = raw.strip()
        user = params.get("user_id")
        k = _k(params.get("k", "10"), self.max_k)
        if not query or len(raw) > MAX_QUERY_CHARS or k is None:
            return None
        if user is not None and not _ID.fullmatch(user):
            return None
        try:
            model = self.service.model
            key = self.service.search_key(model, query, user, k, _NO_FILTERS)
        except ShopfusionError:  # not ready, no search index: the route answers
            return None
        return PlainRead("search", key, user, k, query)


class CachedListMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        service: Service,
        max_k: int,
        gate: ModelGate | None = None,
        batcher: MicroBatcher[FeedRequest, Ranked] | None = None,
        search_batcher: MicroBatcher[SearchCall, Ranked] | None = None,
    ) -> None:
        """``gate`` and ``batcher`` score plain feed misses here; ``search_batcher`` (its own gate
        admits) plain search misses. Without them those misses go to the routes."""
        self.app, self.service, self.gate, self.batcher = app, service, gate, batcher
        self.search_batcher = search_batcher
        self.lists = PlainLists(service, max_k)
        self.served = 0  # requests answered here (tests and profiling read it)
        self.refused = 0  # misses refused here
        self.scored = 0  # misses scored from here

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            found = self.lists.lookup(scope)
            if found is not None and found.name == "search":
                await self._search(scope, receive, send, found)
                return
            if found is not None:
                # A miss is counted where it is scored: here when a batcher is at hand.
                scored_here = self.gate is not None and self.batcher is not None
                ranked = self.service.cache.get(found.key, count_miss=scored_here)
                if ranked is not None:
                    self.served += 1
                    scope["route"] = _ROUTES[found.name]
                    await render_list(ranked, found.name, True)(scope, receive, send)
                    return
                if self.gate is not None:
                    await self._miss(scope, receive, send, self.gate, found)
                    return
        await self.app(scope, receive, send)

    async def _miss(
        self, scope: Scope, receive: Receive, send: Send, gate: ModelGate, read: PlainRead
    ) -> None:
        scope["route"] = _ROUTES[read.name]  # the guard's metrics label
        if gate.refuses():
            self.refused += 1
            await self._busy(send)
            return
        token = drawn_early.set(True)
        try:
            ranked = await self._score(read) if self.batcher is not None else None
            if ranked is None:  # the route decides: errors, or no batcher here
                await self.app(scope, receive, send)
                return
        except HTTPException:  # the queue bound was reached meanwhile
            self.refused += 1
            await self._busy(send)
            return
        finally:
            drawn_early.reset(token)
        self.scored += 1
        await render_list(ranked, read.name, False)(scope, receive, send)

    async def _search(self, scope: Scope, receive: Receive, send: Send, read: PlainRead) -> None:
        batcher = self.search_batcher
        ranked = self.service.cache.get(read.key, count_miss=batcher is not None)
        if ranked is not None:
            self.served += 1
            scope["route"] = _ROUTES["search"]
            await render_search(ranked, read.query, True)(scope, receive, send)
            return
        if batcher is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = _ROUTES["search"]
        try:
            call = SearchCall(self.service.model, read.query, read.subject, read.k, _NO_FILTERS)
            ranked = await batcher.submit(call)
        except HTTPException as exc:  # refused by the search gate, or late in its queue
            self.refused += 1
            await reply(send, exc.status_code, str(exc.detail), exc.headers)
            return
        except Exception:  # the route runs it again and answers as it always does
            await self.app(scope, receive, send)
            return
        self.scored += 1
        await render_search(ranked, read.query, False)(scope, receive, send)

    async def _score(self, read: PlainRead) -> Ranked | None:
        assert self.batcher is not None
        try:
            kind: Literal["recommend", "similar"] = "similar" if read.name == "similar" else "recommend"
            return await self.batcher.submit(FeedRequest(self.service.model, kind, read.subject, read.k))
        except ShopfusionError:
            return None

    @staticmethod
    async def _busy(send: Send) -> None:
        await send(_MODEL_BUSY[0])
        await send(_MODEL_BUSY[1])


def _params(query: bytes) -> dict[str, str] | None:
    try:
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True, strict_parsing=False)
    except ValueError:
        return None
    params = dict(pairs)
    return params if len(params) == len(pairs) else None  # a repeated key: let the routes decide


def _k(value: str, max_k: int) -> int | None:
    if not (value.isascii() and value.isdigit() and len(value) <= 4):
        return None
    k = int(value)
    return k if 1 <= k <= max_k else None
