"""The read endpoints: recommendations, similar items, search, explanations, health, OpenAPI."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from serving_support import ClientFactory, make_settings, train_sample_artifact


def _ids(response_json: dict) -> list[str]:  # type: ignore[type-arg]
    return [item["item_id"] for item in response_json["items"]]


def test_recommend_returns_k_in_stock_items_outside_the_history(client: TestClient) -> None:
    service = client.app.state.service  # type: ignore[attr-defined]
    model = service.model
    for user in ("u0001", "u0050", "u0120"):
        body = client.get("/v1/recommend", params={"user_id": user, "k": 8}).json()
        assert len(body["items"]) == 8
        assert all(item["in_stock"] for item in body["items"])
        history = {model.artifact.item_map.to_external(i) for i in service.history(model, user)}
        assert history and not history & set(_ids(body))
        assert [i["score"] for i in body["items"]] == sorted(
            (i["score"] for i in body["items"]), reverse=True
        )


def test_feeds_are_personal(client: TestClient) -> None:
    feeds = {
        u: _ids(client.get("/v1/recommend", params={"user_id": u, "k": 10}).json())
        for u in ("u0001", "u0002")
    }
    anonymous = _ids(client.get("/v1/recommend", params={"k": 10}).json())
    assert feeds["u0001"] != feeds["u0002"]
    assert anonymous not in feeds.values()


def test_similar_items_of_a_tv_are_mostly_tvs(client: TestClient) -> None:
    body = client.get("/v1/similar/tv-001", params={"k": 5}).json()
    assert "tv-001" not in _ids(body)
    assert sum(item["category"] == "Electronics > TV" for item in body["items"]) >= 3


def test_category_and_brand_filters(client: TestClient) -> None:
    body = client.get(
        "/v1/recommend", params={"user_id": "u0001", "k": 5, "category": "Electronics > Phones"}
    ).json()
    assert body["items"] and all(i["category"].startswith("Electronics > Phones") for i in body["items"])
    body = client.get("/v1/recommend", params={"k": 5, "brand": ["Sony", "Apple"]}).json()
    assert body["items"] and {i["brand"] for i in body["items"]} <= {"Sony", "Apple"}


def test_invalid_input_gets_a_clear_422_or_404(client: TestClient) -> None:
    for params in ({"k": 0}, {"k": 101}, {"k": "ten"}, {"user_id": "a\nb"}, {"user_id": "x" * 300}):
        response = client.get("/v1/recommend", params=params)
        assert response.status_code == 422, params
        assert response.json()["detail"][0]["loc"][0] == "query"
    missing = client.get("/v1/similar/no-such-item")
    assert missing.status_code == 404 and "no-such-item" in missing.json()["detail"]
    assert client.get("/v1/search", params={"q": ""}).status_code == 422
    assert client.get("/v1/search", params={"q": "tv", "min_price": 10, "max_price": 5}).status_code == 422


def test_search_returns_facets_and_applies_filters(client: TestClient) -> None:
    body = client.get("/v1/search", params={"q": "phone", "k": 5}).json()
    assert len(body["items"]) == 5 and all("phone" in i["category"].lower() for i in body["items"])
    brands = {f["value"]: f["count"] for f in body["facets"]["brand"]}
    assert sum(brands.values()) >= 5
    brand = next(iter(brands))
    filtered = client.get("/v1/search", params={"q": "phone", "k": 5, "brand": brand}).json()
    assert filtered["items"] and {i["brand"] for i in filtered["items"]} == {brand}
    assert all(i["in_stock"] for i in filtered["items"])  # the stock rule reaches the engine


def test_search_explains_only_when_asked_and_only_the_items_it_returns(client: TestClient) -> None:
    searcher = client.app.state.service.model.searcher  # type: ignore[attr-defined]
    searcher.explained.clear()
    params = {"q": "phone", "k": 4, "user_id": "u0001"}
    plain = client.get("/v1/search", params=params).json()
    assert plain["signals"] == [] and searcher.explained == []  # nothing explained unasked
    body = client.get("/v1/search", params={**params, "explain": "true"}).json()
    # The list cached without signals does not answer a search that asks for them.
    assert not body["cached"] and _ids(body) == _ids(plain)
    # The engine is asked for 3k spares (dedupe, brand caps), but only the k kept are explained.
    assert len(body["items"]) == 4 and len(searcher.explained) == 4
    assert "lexical" in body["signals"][0]
    again = client.get("/v1/search", params={**params, "explain": "true"}).json()
    assert again["cached"] and again["signals"] == body["signals"]
    by_item = dict(zip(_ids(body), body["signals"], strict=True))
    index = client.app.state.service.model.artifact.item_map  # type: ignore[attr-defined]
    assert [index.to_external(i) for i in searcher.explained] == list(by_item)
    assert [by_item[i["item_id"]]["lexical"] for i in body["items"]] == pytest.approx(
        [i["score"] for i in body["items"]], abs=1e-6
    )


def test_search_in_chinese(client: TestClient) -> None:
    body = client.get("/v1/search", params={"q": "电视", "k": 3}).json()
    assert body["items"] and all("电视" in i["title"] for i in body["items"])


def test_search_without_an_index_answers_503(client_factory: ClientFactory) -> None:
    client = client_factory(search=False)
    response = client.get("/v1/search", params={"q": "phone"})
    assert response.status_code == 503
    assert "retrain with shopfusion train" in response.json()["detail"]
    assert client.get("/readyz").json()["search"] is False


def test_explain_a_weighted_fusion_from_its_exact_decomposition(
    client_factory: ClientFactory, tmp_path: Path
) -> None:
    """Weighted fusion serves on source scores alone; its explanation must still name every source."""
    artifact = train_sample_artifact(tmp_path / "weighted", fusion="weighted")
    client = client_factory(artifact=artifact)
    top = _ids(client.get("/v1/recommend", params={"user_id": "u0001", "k": 1}).json())[0]
    response = client.get("/v1/explain", params={"user_id": "u0001", "item_id": top})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["rank"] == 1
    assert {r["source"] for r in body["reasons"]} == {"item2item", "transition", "als", "popularity"}
    assert any(r["contribution"] > 0 for r in body["reasons"])


def test_explain_names_each_source_in_words(client: TestClient) -> None:
    top = _ids(client.get("/v1/recommend", params={"user_id": "u0001", "k": 1}).json())[0]
    body = client.get("/v1/explain", params={"user_id": "u0001", "item_id": top}).json()
    assert body["rank"] is not None and body["rank"] <= 5
    assert {r["source"] for r in body["reasons"]} == {"item2item", "transition", "als", "popularity"}
    assert 0.99 <= sum(r["share"] for r in body["reasons"]) <= 1.01 or all(
        r["share"] == 0 for r in body["reasons"]
    )
    assert body["summary"].startswith(f"Ranked #{body['rank']} for you because")
    assert body["history_length"] > 0
    assert client.get("/v1/explain", params={"item_id": "nope"}).status_code == 404


def test_explanations_in_chinese(client: TestClient) -> None:
    top = _ids(client.get("/v1/recommend", params={"user_id": "u0001", "k": 1}).json())[0]
    body = client.get("/v1/explain", params={"user_id": "u0001", "item_id": top, "lang": "zh"}).json()
    assert body["summary"].startswith(f"为你推荐第 {body['rank']} 位，因为")
    assert any(r["reason"] == "它是本店的畅销商品" for r in body["reasons"])
    assert client.get("/v1/explain", params={"item_id": top, "lang": "fr"}).status_code == 422


def test_health_readiness_and_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["search"] is True
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/v1/search",
        "/v1/recommend",
        "/v1/similar/{item_id}",
        "/v1/events",
        "/v1/explain",
        "/v1/users/{user_id}",
        "/v1/admin/reload",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in paths, path


def test_metrics_expose_latency_errors_version_and_cache(client: TestClient) -> None:
    client.get("/v1/recommend", params={"user_id": "u0001"})
    client.get("/v1/recommend", params={"user_id": "u0001"})
    client.get("/v1/similar/nope")
    text = client.get("/metrics").text
    assert 'shopfusion_request_seconds_bucket{le="0.02",method="GET",route="/v1/recommend"}' in text
    assert 'shopfusion_requests_total{route="/v1/similar/{item_id}",status="404"} 1.0' in text
    version = client.get("/readyz").json()["model_version"]
    assert f'shopfusion_model_info{{version="{version}"}} 1.0' in text
    assert "shopfusion_cache_hit_rate 0.5" in text
    assert "shopfusion_event_lag_seconds" in text
    assert "shopfusion_query_vector_hit_rate" in text


@pytest.mark.parametrize("opentelemetry", [False, True])
def test_fastapi_native_opentelemetry_is_off_unless_asked_for(
    client_factory: ClientFactory, monkeypatch: pytest.MonkeyPatch, opentelemetry: bool
) -> None:
    """Off, a request never asks OpenTelemetry for its provider (a per-request cost on the event
    loop); on, FastAPI does."""
    import inspect

    from fastapi import FastAPI

    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        pytest.skip("this FastAPI has no native OpenTelemetry")
    trace = pytest.importorskip("opentelemetry.trace")
    client = client_factory(opentelemetry=opentelemetry)
    asked = 0
    real = trace.get_tracer_provider

    def counting() -> object:
        nonlocal asked
        asked += 1
        return real()

    monkeypatch.setattr(trace, "get_tracer_provider", counting)
    assert client.get("/healthz").status_code == 200
    assert (asked > 0) is opentelemetry


def test_blas_runs_on_one_thread_while_the_app_serves_and_is_restored_after(
    sample_artifact: Path, tmp_path: Path
) -> None:
    """Every request's linear algebra is small: the app pins BLAS to one thread for its lifetime
    (the per-search limit and restore cost more than the work they wrapped)."""
    from threadpoolctl import threadpool_info

    from shopfusion.serving.app import create_app

    def blas_threads() -> list[int]:
        # a process-wide setting: an OpenMP build (faiss's) keeps one per thread (tests/retrieval)
        libraries = threadpool_info()
        return [
            int(x["num_threads"])
            for x in libraries
            if x["user_api"] == "blas" and x.get("threading_layer") != "openmp"
        ]

    before = blas_threads()
    with TestClient(create_app(make_settings(sample_artifact, tmp_path))) as served:
        assert served.get("/v1/recommend", params={"user_id": "u0", "k": 3}).status_code in (200, 404)
        assert all(n == 1 for n in blas_threads())
    assert blas_threads() == before
