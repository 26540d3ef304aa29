"""Hot reload (no dropped requests, broken artifacts refused), business rules and the cache."""

from __future__ import annotations

import gc
import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from serving_support import ADMIN_KEY, ClientFactory, copy_artifact

from shopfusion.data.idmap import IdMap
from shopfusion.serving.cache import LRUCache
from shopfusion.serving.rules import CatalogView, ListFilters, RuleSet
from shopfusion.serving.settings import RuleSettings

ADMIN = {"X-API-Key": ADMIN_KEY}


def _retrained_copy(src: Path, dst: Path) -> Path:
    """A copy that reads as another artifact (a later training run)."""
    copy_artifact(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["created_at"] = "2030-01-01T00:00:00+00:00"
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


def test_hot_reload_swaps_without_dropping_requests(
    client_factory: ClientFactory, sample_artifact: Path, tmp_path: Path
) -> None:
    # No load shedding here: loading the new artifact takes the CPU (and the GIL) for a moment,
    # and a miss that waited through it is refused (503) by design (test_overload covers that);
    # this test is about the swap, which must lose no request (CI saw one 503, session 12).
    client = client_factory(loop_delay_target_ms=0, model_delay_target_ms=0, model_deadline_ms=0)
    old = client.get("/readyz").json()["model_version"]
    new_dir = _retrained_copy(sample_artifact, tmp_path / "next")
    codes: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            codes.append(client.get("/v1/recommend", params={"user_id": "u0003", "k": 5}).status_code)

    worker = threading.Thread(target=hammer)
    worker.start()
    response = client.post("/v1/admin/reload", json={"artifact": str(new_dir)}, headers=ADMIN)
    stop.set()
    worker.join()
    assert response.status_code == 200
    assert (
        response.json()["model_version"].startswith("2030-01-01") and old != response.json()["model_version"]
    )
    assert codes and set(codes) == {200}
    assert client.get("/readyz").json()["model_version"] == response.json()["model_version"]
    assert f'version="{response.json()["model_version"]}"' in client.get("/metrics").text


@pytest.mark.parametrize("damage", ["manifest", "model", "items"])
def test_a_broken_artifact_is_refused_and_the_old_one_keeps_serving(
    client_factory: ClientFactory, sample_artifact: Path, tmp_path: Path, damage: str
) -> None:
    client = client_factory()
    old = client.get("/readyz").json()["model_version"]
    broken = _retrained_copy(sample_artifact, tmp_path / "broken")
    if damage == "manifest":
        (broken / "manifest.json").write_text("{not json")
    elif damage == "model":
        (broken / "model" / "arrays.npz").write_bytes(b"garbage")
    else:  # an id map that no longer matches the model
        (broken / "items.txt").write_text("only-one-item\n")
    response = client.post("/v1/admin/reload", json={"artifact": str(broken)}, headers=ADMIN)
    assert response.status_code == 409
    assert "still serving the previous one" in response.json()["detail"]
    assert client.get("/readyz").json()["model_version"] == old
    assert client.get("/v1/recommend", params={"user_id": "u0001"}).status_code == 200
    assert "shopfusion_reload_failures 1.0" in client.get("/metrics").text


def test_reload_drops_cached_lists(
    client_factory: ClientFactory, sample_artifact: Path, tmp_path: Path
) -> None:
    client = client_factory()
    client.get("/v1/recommend", params={"user_id": "u0001"})
    assert client.get("/v1/recommend", params={"user_id": "u0001"}).json()["cached"]
    client.post(
        "/v1/admin/reload",
        json={"artifact": str(_retrained_copy(sample_artifact, tmp_path / "n"))},
        headers=ADMIN,
    )
    assert not client.get("/v1/recommend", params={"user_id": "u0001"}).json()["cached"]


def _in_collected_generations(obj: object) -> bool:
    return any(o is obj for generation in (0, 1, 2) for o in gc.get_objects(generation))


def test_the_loaded_model_is_kept_out_of_full_garbage_collections(
    client_factory: ClientFactory, sample_artifact: Path, tmp_path: Path
) -> None:
    # Regression: every full collection traversed the model's objects, 40-230 ms pauses of the
    # event loop on Beauty (RESULTS.md, session 5).
    client = client_factory()
    service = client.app.state.service  # type: ignore[attr-defined]
    cards = service.model.cards
    assert gc.get_freeze_count() > 0 and not _in_collected_generations(cards)
    client.post(
        "/v1/admin/reload",
        json={"artifact": str(_retrained_copy(sample_artifact, tmp_path / "n"))},
        headers=ADMIN,
    )
    assert service.model.cards is not cards and not _in_collected_generations(service.model.cards)
    garbage: list[object] = []
    garbage.append(garbage)  # a cycle: only a collection frees it
    assert _in_collected_generations(garbage)  # what came after the freeze is collected as usual


def test_polling_picks_up_a_retrained_artifact(
    client_factory: ClientFactory, sample_artifact: Path, tmp_path: Path
) -> None:
    live = copy_artifact(sample_artifact, tmp_path / "live")
    client = client_factory(artifact=live, reload_poll_s=0.05)
    before = client.get("/readyz").json()["model_version"]
    manifest = json.loads((live / "manifest.json").read_text())
    manifest["created_at"] = "2031-01-01T00:00:00+00:00"
    (live / "manifest.json").write_text(json.dumps(manifest))
    for _ in range(100):
        if client.get("/readyz").json()["model_version"] != before:
            break
        threading.Event().wait(0.05)
    assert client.get("/readyz").json()["model_version"].startswith("2031-01-01")


# --- business rules on a catalog with a known answer ---------------------------------------
CATALOG = pd.DataFrame(
    {
        "item_id": [f"i{i}" for i in range(8)],
        "title": [
            "Red Lipstick",
            "Red  lipstick!",
            "Blue Phone",
            "Green Phone",
            "Soap",
            "Soap Bar",
            "TV",
            "Radio",
        ],
        "brand": ["L", "L", "A", "A", "A", "B", "C", ""],
        "category": [
            "Beauty > Lips",
            "Beauty > Lips",
            "Tech > Phones",
            "Tech > Phones",
            "Beauty > Bath",
            "Beauty > Bath",
            "Tech > TV",
            "Tech > Audio",
        ],
        "stock": [5, 5, 0, 3, 2, 2, 1, None],
    }
)
ORDER = np.arange(8, dtype=np.int64)
SCORES = np.linspace(1.0, 0.3, 8).astype(np.float32)


def _rules(**settings: object) -> RuleSet:
    base = {"in_stock_only": False, "dedupe": False}
    ids = IdMap("item", CATALOG["item_id"])
    return RuleSet(RuleSettings.model_validate({**base, **settings}), CatalogView.of(CATALOG, 8), ids)


def _apply(rules: RuleSet, k: int = 8, filters: ListFilters | None = None) -> list[int]:
    items: list[int] = rules.apply(ORDER, SCORES, k, filters)[0].tolist()
    return items


def test_in_stock_only_drops_sold_out_items_and_keeps_unknown_stock() -> None:
    assert _apply(_rules(in_stock_only=True)) == [0, 1, 3, 4, 5, 6, 7]


def test_boost_and_bury_lists() -> None:
    assert _apply(_rules(boost=["i6"], bury="i0,i1")) == [6, 2, 3, 4, 5, 7, 0, 1]


def test_near_duplicates_are_shown_once() -> None:
    assert _apply(_rules(dedupe=True)) == [0, 2, 3, 4, 5, 6, 7]


def test_per_brand_cap() -> None:
    assert _apply(_rules(max_per_brand=1)) == [0, 2, 5, 6, 7]


def test_mmr_trades_relevance_for_variety() -> None:
    plain = _apply(_rules(), k=4)
    diverse = _apply(_rules(mmr_lambda=0.3), k=4)
    categories = CATALOG["category"].to_numpy()
    assert len(set(categories[plain])) < len(set(categories[diverse])) == 4
    assert diverse[0] == 0  # the most relevant item still leads


def test_category_and_brand_filters_and_padding() -> None:
    rules = _rules()
    assert _apply(rules, filters=ListFilters(category="tech")) == [2, 3, 6, 7]
    assert _apply(rules, filters=ListFilters(brands=("a", "C"))) == [2, 3, 4, 6]
    padded = rules.apply(np.array([3, -1, 1], dtype=np.int64), np.ones(3, np.float32), 5)[0]
    assert padded.tolist() == [3, 1]


def test_rules_reach_the_api(client_factory: ClientFactory) -> None:
    plain = client_factory().get("/v1/recommend", params={"user_id": "u0001", "k": 10}).json()["items"]
    lifted = plain[-1]["item_id"]
    client = client_factory(rules=RuleSettings(max_per_brand=1, boost=[lifted, "tv-003"]))
    items = client.get("/v1/recommend", params={"user_id": "u0001", "k": 10}).json()["items"]
    brands = [i["brand"] for i in items if i["brand"]]
    assert len(brands) == len(set(brands))
    assert items[0]["item_id"] == lifted
    assert "tv-003" not in [i["item_id"] for i in items]  # sold out: even a boost never shows it


def test_lru_cache_counts_and_forgets() -> None:
    cache: LRUCache[str] = LRUCache(2)
    cache.put("a", "A", user="u1")
    cache.put("b", "B")
    assert cache.get("a") == "A" and cache.get("zz") is None
    cache.put("c", "C")  # evicts b, the least recently used
    assert cache.get("b") is None and cache.get("a") == "A"
    cache.drop_user("u1")
    assert cache.get("a") is None
    assert cache.hits == 2 and cache.misses == 3 and cache.hit_rate == pytest.approx(0.4)


def test_rules_and_keys_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from shopfusion.serving.security import hash_key
    from shopfusion.serving.settings import ServiceSettings

    monkeypatch.setenv("SHOPFUSION_RULES_BOOST", "i1, i2")
    monkeypatch.setenv("SHOPFUSION_RULES_MAX_PER_BRAND", "2")
    monkeypatch.setenv("SHOPFUSION_INGEST_KEY_HASHES", f"{hash_key('a')},{hash_key('b')}")
    settings = ServiceSettings(artifact=Path("x"))
    assert settings.rules.boost == ["i1", "i2"] and settings.rules.max_per_brand == 2
    assert settings.ingest_key_hashes == [hash_key("a"), hash_key("b")]
    monkeypatch.setenv("SHOPFUSION_RULES_MMR_LAMBDA", "1.5")
    with pytest.raises(ValueError, match="mmr_lambda"):
        ServiceSettings(artifact=Path("x"))
    monkeypatch.delenv("SHOPFUSION_RULES_MMR_LAMBDA")
    monkeypatch.setenv("SHOPFUSION_BATCH_WINDOW_MS", "30")
    with pytest.raises(ValueError, match=r"model_deadline_ms .* must exceed batch_window_ms"):
        ServiceSettings(artifact=Path("x"))
    monkeypatch.setenv("SHOPFUSION_MODEL_DEADLINE_MS", "0")
    assert ServiceSettings(artifact=Path("x")).batch_window_ms == 30
    monkeypatch.setenv("SHOPFUSION_SEARCH_OVERLOAD_BUDGET_MS", "60")
    with pytest.raises(ValueError, match=r"search_overload_budget_ms .* must not exceed"):
        ServiceSettings(artifact=Path("x"))
    monkeypatch.setenv("SHOPFUSION_SEARCH_WAIT_BUDGET_MS", "0")  # no budget: nothing to tighten
    assert ServiceSettings(artifact=Path("x")).search_overload_budget_ms == 60


def test_precomputed_feeds_are_cache_hits_equal_to_live_ones(client_factory: ClientFactory) -> None:
    import time

    warm = client_factory(warm_users=40, warm_items=5)
    service = warm.app.state.service  # type: ignore[attr-defined]
    deadline = time.monotonic() + 60
    while len(service.cache) < 45 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(service.cache) == 45
    artifact = service.model.artifact
    busiest = artifact.user_map.to_external(int(np.argmax(artifact.histories.lengths())))
    served = warm.get("/v1/recommend", params={"user_id": busiest}).json()
    assert served["cached"]
    live = client_factory(cache_size=0).get("/v1/recommend", params={"user_id": busiest}).json()
    assert not live["cached"]
    assert [i["item_id"] for i in served["items"]] == [i["item_id"] for i in live["items"]]
    popular = artifact.item_map.ids[int(np.argmax(np.bincount(artifact.histories.items)))]
    similar = warm.get(f"/v1/similar/{popular}").json()
    assert similar["cached"]
    live_similar = client_factory(cache_size=0).get(f"/v1/similar/{popular}").json()
    assert [i["item_id"] for i in similar["items"]] == [i["item_id"] for i in live_similar["items"]]


def test_readiness_waits_for_the_precomputation_at_most_warm_ready_s(client_factory: ClientFactory) -> None:
    import time

    client = client_factory(warm_ready_s=5.0)
    service = client.app.state.service  # type: ignore[attr-defined]
    assert client.get("/readyz").status_code == 200  # nothing to precompute
    service.warming_since = time.monotonic()
    warming = client.get("/readyz")
    assert warming.status_code == 503 and warming.json()["status"] == "warming"
    service.warming_since = time.monotonic() - 6.0  # past the budget: ready, still warming
    assert client.get("/readyz").status_code == 200
    service.warming_since = None
    assert client_factory(warm_ready_s=0.0).get("/readyz").status_code == 200


def test_precomputation_gives_way_to_waiting_requests_a_while(client_factory: ClientFactory) -> None:
    import time

    service = client_factory().app.state.service  # type: ignore[attr-defined]
    asked: list[float] = []

    def busy() -> bool:
        asked.append(time.monotonic())
        return True  # live misses always waiting: each batch still goes after yield_s

    started = time.monotonic()
    done = service.warm(service.model, 64, batch=32, busy=busy, yield_s=0.1)
    assert done == 64 and service.warming_since is None
    assert time.monotonic() - started >= 0.2  # two batches, each after 0.1 s of giving way
    assert len(asked) > 10
    assert service.warm(service.model, 64, batch=32, busy=lambda: False, yield_s=10.0) == 64  # no wait
