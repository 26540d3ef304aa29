"""The synthetic sample shop: deterministic, valid, bilingual, and with a learnable signal."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from shopfusion.cli.sample import register
from shopfusion.data.sample import generate_sample, write_sample
from shopfusion.data.schema import Event, EventType, Product
from shopfusion.errors import ConfigError

N_USERS = 150  # enough for the statistics below, quick to generate


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample")
    write_sample(out, seed=7, n_users=N_USERS)
    return out


@pytest.fixture(scope="module")
def rows(sample_dir: Path) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    def read(name: str) -> list[dict[str, object]]:
        lines = (sample_dir / name).read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines]

    return read("catalog.jsonl"), read("events.jsonl")


@pytest.fixture(scope="module")
def sample() -> tuple[list[Product], list[Event]]:
    return generate_sample(seed=7, n_users=N_USERS)


@pytest.fixture(scope="module")
def full_sample() -> tuple[list[Product], list[Event]]:
    return generate_sample()  # the defaults: seed 7, 600 users


def test_same_seed_gives_identical_files(sample_dir: Path, tmp_path: Path) -> None:
    paths = write_sample(tmp_path, seed=7, n_users=N_USERS)
    assert set(paths) == {"catalog", "events", "readme"}
    for path in paths.values():
        assert path.read_bytes() == (sample_dir / path.name).read_bytes(), path.name


def test_another_seed_gives_other_data(sample: tuple[list[Product], list[Event]]) -> None:
    products, events = generate_sample(seed=8, n_users=N_USERS)
    assert [p.title for p in products] != [p.title for p in sample[0]]
    assert events != sample[1]


def test_every_row_validates_and_round_trips(
    rows: tuple[list[dict[str, object]], list[dict[str, object]]],
) -> None:
    catalog, events = rows
    assert 350 <= len(catalog) <= 450
    for row in catalog:
        assert Product.model_validate(row).model_dump(mode="json") == row
    for row in events:
        assert Event.model_validate(row).model_dump(mode="json") == row
    assert set(catalog[0]) == set(Product.model_fields)
    assert set(events[0]) == set(Event.model_fields)


def test_files_are_utf8_text_with_utc_timestamps(sample_dir: Path) -> None:
    catalog = (sample_dir / "catalog.jsonl").read_text(encoding="utf-8")
    assert "三星电视" in catalog  # not \u-escaped
    first = json.loads((sample_dir / "events.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert str(first["timestamp"]).endswith("Z")
    assert "synthetic" in (sample_dir / "README.md").read_text(encoding="utf-8").lower()


def test_sample_size_is_realistic(full_sample: tuple[list[Product], list[Event]]) -> None:
    events = full_sample[1]
    assert 20_000 <= len(events) <= 40_000
    assert len({e.user_id for e in events}) == 600
    span = events[-1].timestamp - events[0].timestamp
    assert 55 <= span.days <= 62


def test_both_languages_with_about_a_third_chinese(sample: tuple[list[Product], list[Event]]) -> None:
    products, events = sample
    languages = Counter(p.language for p in products)
    assert set(languages) == {"en", "zh"}
    assert 0.25 <= languages["zh"] / len(products) <= 0.45
    assert {p.currency for p in products if p.language == "zh"} == {"CNY"}
    assert {p.currency for p in products if p.language == "en"} == {"USD"}
    queries = {e.query for e in events if e.type is EventType.SEARCH}
    assert any(any("\u4e00" <= ch <= "\u9fff" for ch in q) for q in queries)
    assert any(q.isascii() for q in queries)


def test_chinese_and_english_tvs_exist(sample: tuple[list[Product], list[Event]]) -> None:
    titles = {p.title for p in sample[0]}
    assert "三星电视 55英寸 4K 超高清智能电视" in titles
    assert 'Samsung 55" 4K UHD Smart TV' in titles
    assert any(t.startswith("索尼电视") for t in titles)
    assert any(t.startswith("华为电视") for t in titles)
    tv_paths = {tuple(p.category) for p in sample[0] if p.attributes.get("category_zh") == "电视"}
    assert tv_paths == {("Electronics", "TV")}  # the same path in both languages


def test_catalog_is_plausible(sample: tuple[list[Product], list[Event]]) -> None:
    products = sample[0]
    assert len({p.item_id for p in products}) == len(products)
    assert len({(p.language, p.title) for p in products}) == len(products)
    assert len({tuple(p.category) for p in products}) >= 8
    assert any(p.stock == 0 for p in products) and any((p.stock or 0) > 0 for p in products)
    assert all(p.price is not None and p.price > 0 and p.brand for p in products)
    usd = {p.attributes["category_zh"]: [] for p in products}
    for p in products:
        if p.currency == "USD":
            usd[p.attributes["category_zh"]].append(p.price)
    assert max(usd["口红"]) < min(usd["电视"])  # a lipstick costs less than any TV


def test_events_refer_to_catalog_items(sample: tuple[list[Product], list[Event]]) -> None:
    products, events = sample
    item_ids = {p.item_id for p in products}
    in_stock = {p.item_id for p in products if (p.stock or 0) > 0}
    for e in events:
        assert e.item_id is None if e.type is EventType.SEARCH else e.item_id in item_ids
        if e.type in (EventType.ADD_TO_CART, EventType.PURCHASE):
            assert e.item_id in in_stock
    assert [e.timestamp for e in events] == sorted(e.timestamp for e in events)


def test_funnel_narrows(sample: tuple[list[Product], list[Event]]) -> None:
    counts = Counter(e.type for e in sample[1])
    assert counts[EventType.VIEW] > counts[EventType.CLICK] > counts[EventType.ADD_TO_CART]
    assert counts[EventType.ADD_TO_CART] > counts[EventType.PURCHASE] > 0


def test_search_clicks_carry_query_and_position(sample: tuple[list[Product], list[Event]]) -> None:
    products = {p.item_id: p for p in sample[0]}
    clicks = [e for e in sample[1] if e.type is EventType.CLICK and e.query]
    assert len(clicks) > 100
    assert all(e.position is not None and e.position >= 0 for e in clicks)
    assert Counter(e.position for e in clicks).most_common(1)[0][0] == 0  # position bias
    tv_queries = [e for e in clicks if e.query in ("电视", "tv")]
    assert tv_queries and all(
        products[str(e.item_id)].attributes["category_zh"] == "电视" for e in tv_queries
    )


def test_last_item_shares_a_category_with_earlier_ones(sample: tuple[list[Product], list[Event]]) -> None:
    """The signal collaborative filtering needs: shoppers stay with their categories."""
    products, events = sample
    category = {p.item_id: tuple(p.category) for p in products}
    history: defaultdict[str, list[tuple[str, ...]]] = defaultdict(list)
    for e in events:
        if e.type in (EventType.CLICK, EventType.ADD_TO_CART, EventType.PURCHASE):
            history[e.user_id].append(category[str(e.item_id)])
    hits, chance = 0.0, 0.0
    users = [h for h in history.values() if len(h) >= 2]
    for h in users:
        earlier = set(h[:-1])
        hits += h[-1] in earlier
        chance += sum(c in earlier for c in category.values()) / len(category)
    assert len(users) > 0.8 * N_USERS
    assert hits / len(users) > 0.8
    assert hits / len(users) > chance / len(users) + 0.4


def test_item_to_item_beats_popularity_on_leave_one_out(
    full_sample: tuple[list[Product], list[Event]],
) -> None:
    """Hold out each shopper's last engaged item: co-occurrence finds it far more often than popularity."""
    products, events = full_sample
    index = {p.item_id: i for i, p in enumerate(products)}
    sequences: defaultdict[str, list[int]] = defaultdict(list)
    for e in events:
        if e.type in (EventType.CLICK, EventType.ADD_TO_CART, EventType.PURCHASE):
            sequences[e.user_id].append(index[str(e.item_id)])
    train = np.zeros((len(sequences), len(products)))
    for row, items in enumerate(sequences.values()):
        train[row, items[:-1]] = 1.0
    popularity = train.sum(axis=0)
    cooccurrence = train.T @ train / np.sqrt(np.outer(popularity, popularity) + 1e-9)
    hits = Counter[str]()
    for row, items in enumerate(sequences.values()):
        seen = train[row] > 0
        if items[-1] in items[:-1] or not seen.any():
            continue  # a repeat cannot be recommended once seen items are excluded
        for name, scores in (("popularity", popularity), ("item2item", cooccurrence[seen].sum(axis=0))):
            top10 = np.argsort(-np.where(seen, -np.inf, scores + 1e-6 * popularity), kind="stable")[:10]
            hits[name] += items[-1] in top10
    assert hits["item2item"] > 2.5 * hits["popularity"] > 0


def test_rejects_no_users() -> None:
    with pytest.raises(ConfigError, match="n_users"):
        generate_sample(n_users=0)


def test_cli_writes_the_sample(tmp_path: Path) -> None:
    app = typer.Typer()
    app.callback()(lambda: None)  # keep "sample" a sub-command, as in the real CLI
    register(app)
    result = CliRunner().invoke(
        app, ["sample", "--out", str(tmp_path / "shop"), "--seed", "3", "--users", "20"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "shop" / "catalog.jsonl").exists()
    assert (tmp_path / "shop" / "events.jsonl").exists()
    assert str(tmp_path / "shop" / "README.md") in result.output
    bad = CliRunner().invoke(app, ["sample", "--out", str(tmp_path / "x"), "--users", "0"])
    assert bad.exit_code != 0
