"""Cache hits answered before FastAPI: same bytes as the routes, and everything else untouched."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from serving_support import READ_KEY, ClientFactory

from shopfusion.serving.fastpath import CachedListMiddleware


def _fast(client: TestClient) -> CachedListMiddleware:
    stack = client.app.middleware_stack  # type: ignore[attr-defined]
    while not isinstance(stack, CachedListMiddleware):
        stack = stack.app
    return stack


def test_a_hit_is_answered_by_the_fast_path_with_the_routes_bytes(client: TestClient) -> None:
    fast = _fast(client)
    first = client.get("/v1/recommend", params={"user_id": "u0001", "k": 7})
    assert first.status_code == 200 and not first.json()["cached"] and fast.served == 0
    hit = client.get("/v1/recommend", params={"user_id": "u0001", "k": 7})
    assert fast.served == 1
    # An empty category is no filter: the same cache entry, but through the routes.
    routed = client.get("/v1/recommend", params={"user_id": "u0001", "k": 7, "category": ""})
    assert fast.served == 1
    assert hit.content == routed.content and hit.json()["cached"]
    assert hit.headers["content-type"] == routed.headers["content-type"] == "application/json"
    assert hit.headers["content-length"] == routed.headers["content-length"]


def test_similar_items_and_session_feeds_take_the_fast_path(client: TestClient) -> None:
    fast = _fast(client)
    for params in ({"k": "5"}, {}):
        client.get("/v1/similar/tv-002", params=params)
        assert client.get("/v1/similar/tv-002", params=params).json()["cached"]
    client.get("/v1/recommend", params={"session_id": "s-1"})
    assert client.get("/v1/recommend", params={"session_id": "s-1"}).json()["cached"]
    client.get("/v1/recommend")  # a new visitor
    assert client.get("/v1/recommend").json()["cached"]
    assert fast.served == 4


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/recommend?user_id=u0001&k=0", 422),
        ("/v1/recommend?user_id=u0001&k=101", 422),
        ("/v1/recommend?user_id=u0001&k=ten", 422),
        ("/v1/recommend?user_id=u0001%0A&k=10", 422),
        ("/v1/recommend?user_id=&k=10", 422),
        ("/v1/recommend?user_id=u0001&k=10&k=10", 200),
        ("/v1/recommend?user_id=u0001&k=10&brand=Sony", 200),
        ("/v1/similar/no-such-item?k=10", 404),
        ("/v1/similar/tv-002?k=10&user_id=u0001", 200),
    ],
)
def test_anything_but_a_plain_hit_goes_to_the_routes(client: TestClient, path: str, status: int) -> None:
    fast = _fast(client)
    client.get("/v1/recommend", params={"user_id": "u0001", "k": 10})
    client.get("/v1/similar/tv-002", params={"k": 10})
    assert client.get(path).status_code == status
    assert fast.served == 0


def test_reads_that_need_a_key_never_take_the_fast_path(client_factory: ClientFactory) -> None:
    client = client_factory(read_requires_key=True)
    fast = _fast(client)
    key = {"X-API-Key": READ_KEY}
    assert client.get("/v1/recommend", params={"user_id": "u0001"}, headers=key).status_code == 200
    assert client.get("/v1/recommend", params={"user_id": "u0001"}).status_code == 401
    assert client.get("/v1/recommend", params={"user_id": "u0001"}, headers=key).json()["cached"]
    assert client.get("/v1/search", params={"q": "phone"}).status_code == 401
    assert client.get("/v1/search", params={"q": "phone"}, headers=key).status_code == 200
    assert client.get("/v1/search", params={"q": "phone"}, headers=key).json()["cached"]
    assert (fast.served, fast.scored) == (0, 0)


def test_fast_hits_count_in_the_metrics_and_a_miss_counts_once(client: TestClient) -> None:
    service = client.app.state.service  # type: ignore[attr-defined]
    client.get("/v1/recommend", params={"user_id": "u0005"})
    assert (service.cache.hits, service.cache.misses) == (0, 1)
    client.get("/v1/recommend", params={"user_id": "u0005"})
    assert (service.cache.hits, service.cache.misses) == (1, 1)
    metrics = client.get("/metrics").text
    assert 'shopfusion_requests_total{route="/v1/recommend",status="200"} 2.0' in metrics


def test_a_plain_miss_the_model_would_refuse_is_refused_before_routing(client: TestClient) -> None:
    fast = _fast(client)
    gate = client.app.state.gate  # type: ignore[attr-defined]
    draws: list[float] = []

    def draw(value: float) -> Callable[[], float]:
        def made() -> float:
            draws.append(value)
            return value

        return made

    gate.shedder.target_s, gate.shedder.p = 0.1, 0.5  # shedding on, half refused
    gate.shedder.draw = draw(0.2)
    refused = client.get("/v1/recommend", params={"user_id": "u0011"})
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert fast.refused == 1 and len(draws) == 1 and gate.pending == 0
    assert gate.metrics.rejected.labels("model_busy")._value.get() == 1
    gate.shedder.draw = draw(0.9)
    admitted = client.get("/v1/recommend", params={"user_id": "u0011"})
    assert admitted.status_code == 200 and not admitted.json()["cached"]
    assert len(draws) == 2  # one draw per request: the route did not draw again
    filtered = client.get("/v1/recommend", params={"user_id": "u0011", "category": "TVs"})
    assert filtered.status_code == 200 and len(draws) == 3  # not a plain request: the route drew
    gate.shedder.p = 0.0
    metrics = client.get("/metrics").text
    assert 'shopfusion_requests_total{route="/v1/recommend",status="503"} 1.0' in metrics


def test_a_plain_miss_is_scored_from_the_fast_path_with_the_routes_bytes(client: TestClient) -> None:
    fast = _fast(client)
    scored = client.get("/v1/recommend", params={"user_id": "u0021", "k": 6})
    assert scored.status_code == 200 and not scored.json()["cached"] and fast.scored == 1
    client.app.state.service.cache.clear()  # type: ignore[attr-defined]
    # An empty category is no filter: the same list, computed and rendered by the route.
    routed = client.get("/v1/recommend", params={"user_id": "u0021", "k": 6, "category": ""})
    assert fast.scored == 1
    assert scored.content == routed.content
    assert scored.headers["content-length"] == routed.headers["content-length"]
    similar = client.get("/v1/similar/tv-002", params={"k": 4})
    assert similar.status_code == 200 and len(similar.json()["items"]) == 4 and fast.scored == 2
    metrics = client.get("/metrics").text
    assert 'shopfusion_requests_total{route="/v1/recommend",status="200"} 2.0' in metrics
    assert 'shopfusion_requests_total{route="/v1/similar/{item_id}",status="200"} 1.0' in metrics


def test_a_plain_search_is_served_by_the_fast_path_with_the_routes_bytes(client: TestClient) -> None:
    fast = _fast(client)
    params = {"q": " phone ", "user_id": "u0001", "k": "4"}
    scored = client.get("/v1/search", params=params)
    assert scored.status_code == 200 and not scored.json()["cached"] and fast.scored == 1
    assert scored.json()["query"] == "phone" and len(scored.json()["items"]) == 4
    hit = client.get("/v1/search", params=params)
    assert hit.json()["cached"] and fast.served == 1
    client.app.state.service.cache.clear()  # type: ignore[attr-defined]
    # k given twice (the last counts): not plain, so the route computes and renders the same search.
    routed = client.get("/v1/search?q=+phone+&user_id=u0001&k=4&k=4")
    assert (fast.scored, fast.served) == (1, 1)
    assert scored.content == routed.content
    assert scored.headers["content-length"] == routed.headers["content-length"]
    assert client.get("/v1/search?q=+phone+&user_id=u0001&k=4&k=4").content == hit.content
    metrics = client.get("/metrics").text
    assert 'shopfusion_requests_total{route="/v1/search",status="200"} 4.0' in metrics


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/search", 422),
        ("/v1/search?q=", 422),
        ("/v1/search?q=+++", 422),
        ("/v1/search?q=" + "a" * 201, 422),
        ("/v1/search?q=phone&k=0", 422),
        ("/v1/search?q=phone&k=101", 422),
        ("/v1/search?q=phone&user_id=", 422),
        ("/v1/search?q=phone&user_id=u0001%0A", 422),
        ("/v1/search?q=phone&q=tv", 200),
        ("/v1/search?q=phone&brand=Sony", 200),
        ("/v1/search?q=phone&in_stock=true", 200),
    ],
)
def test_anything_but_a_plain_search_goes_to_the_route(client: TestClient, path: str, status: int) -> None:
    fast = _fast(client)
    assert client.get(path).status_code == status
    assert (fast.served, fast.scored, fast.refused) == (0, 0, 0)


def test_the_longest_plain_query_is_served_by_the_fast_path(client: TestClient) -> None:
    fast = _fast(client)
    assert client.get("/v1/search", params={"q": "phone " + "a" * 194}).status_code == 200
    assert fast.scored == 1


def test_a_plain_search_the_search_gate_refuses_is_refused_before_routing(client: TestClient) -> None:
    fast = _fast(client)
    state = client.app.state  # type: ignore[attr-defined]
    state.search_gate.pending = state.search_gate.max_pending  # the searches' queue is full
    refused = client.get("/v1/search", params={"q": "tv", "user_id": "u0002"})
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json() == {"detail": "the model is at capacity; retry shortly"}
    assert fast.refused == 1 and fast.scored == 0
    assert state.gate.metrics.rejected.labels("model_busy")._value.get() == 1
    state.search_gate.pending = 0
    assert client.get("/v1/search", params={"q": "tv", "user_id": "u0002"}).status_code == 200
    assert fast.scored == 1
    metrics = client.get("/metrics").text
    assert 'shopfusion_requests_total{route="/v1/search",status="503"} 1.0' in metrics


def test_without_a_search_index_a_plain_search_gets_the_routes_503(client_factory: ClientFactory) -> None:
    client = client_factory(search=False)
    fast = _fast(client)
    response = client.get("/v1/search", params={"q": "phone"})
    assert response.status_code == 503 and "no search index" in response.json()["detail"]
    assert (fast.served, fast.scored, fast.refused) == (0, 0, 0)


def test_a_search_that_fails_in_the_engine_is_answered_by_the_route(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = _fast(client)
    service = client.app.state.service  # type: ignore[attr-defined]
    calls: list[int] = []

    def broken(calls_: object) -> list[Exception]:
        calls.append(1)
        return [RuntimeError("engine down")]

    monkeypatch.setattr(service, "search_batch", broken)
    client.app.state.search_batcher.process = broken  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="engine down"):  # TestClient re-raises the route's 500
        client.get("/v1/search", params={"q": "phone"})
    assert len(calls) == 2 and fast.scored == 0  # tried here, then once more by the route
