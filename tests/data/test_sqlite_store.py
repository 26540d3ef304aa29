"""SQLiteStore: durable appends (a SIGKILL test), upserts, append-only log, snapshots."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from shopfusion.data.dataset import Dataset
from shopfusion.data.layouts import load_dataset
from shopfusion.data.schema import Event, EventType, Product
from shopfusion.data.store import SQLiteStore, read_snapshot
from shopfusion.errors import ArtifactError

T0 = 1_700_000_000


def products() -> list[Product]:
    return [
        Product(item_id="p1", title="Red lipstick", category=["Beauty", "Lips"], price=12.5, stock=3),
        Product(
            item_id="p2",
            title="保湿面霜",
            brand="华为",
            attributes={"颜色": "白", "size": "50ml"},
            language="zh",
        ),
        Product(item_id="p3", title="Mascara", currency="eur"),
    ]


def events() -> list[Event]:
    ts = [datetime.fromtimestamp(T0 + i, tz=UTC) for i in range(6)]
    return [
        Event(user_id="u2", item_id="p2", type=EventType.VIEW, timestamp=ts[0], session_id="s1"),
        Event(
            user_id="u1", item_id="p1", type=EventType.CLICK, timestamp=ts[2], position=3, query="lipstick"
        ),
        Event(user_id="u1", item_id="p3", type=EventType.PURCHASE, timestamp=ts[1], context={"page": "home"}),
        Event(user_id="u2", type=EventType.SEARCH, timestamp=ts[3], query="面霜"),
        Event(user_id="u2", item_id="p1", type=EventType.ADD_TO_CART, timestamp=ts[4]),
    ]


@pytest.fixture
def open_store() -> Iterator[Callable[[Path], SQLiteStore]]:
    """Opens stores and closes them after the test."""
    opened: list[SQLiteStore] = []

    def open_(path: Path) -> SQLiteStore:
        opened.append(SQLiteStore(path))
        return opened[-1]

    yield open_
    for db in opened:
        db.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore(tmp_path / "shop.db") as db:
        db.upsert_products(products())
        db.append_events(events())
        yield db


def test_durability_settings(store: SQLiteStore) -> None:
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_append_returns_sequence_numbers(store: SQLiteStore) -> None:
    assert store.max_sequence() == 5
    extra = Event(user_id="u3", item_id="p1", timestamp=T0)
    assert store.append_events([extra]) == 6
    assert store.append_events([]) == 6
    assert store.count_events() == 6
    ((seq, event),) = store.events_after(5)
    assert (seq, event) == (6, extra)


def test_events_round_trip(store: SQLiteStore) -> None:
    assert [e for _, e in store.events_after(0)] == events()


def test_upsert_replaces_and_keeps_catalog_position(store: SQLiteStore) -> None:
    store.upsert_products([Product(item_id="p1", title="Red lipstick v2", price=11.0)])
    assert store.count_products() == 3
    product = store.get_product("p1")
    assert product is not None and (product.title, product.price, product.category) == (
        "Red lipstick v2",
        11.0,
        [],
    )
    assert store.get_product("p2") == products()[1]  # Chinese text and JSON attributes survive
    assert store.get_product("nope") is None
    assert list(store.to_dataset().catalog["item_id"]) == ["p1", "p2", "p3"]


def test_event_log_is_append_only(store: SQLiteStore) -> None:
    conn = sqlite3.connect(store.path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM events WHERE seq = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE events SET user_id = 'x'")
    conn.close()


def test_erase_user_deletes_only_that_users_events_and_keeps_the_guard(store: SQLiteStore) -> None:
    users = [e.user_id for _, e in store.events_after(0)]
    victim = users[0]
    assert store.erase_user(victim) == users.count(victim)
    assert victim not in {e.user_id for _, e in store.events_after(0)}
    assert store.count_events() == len(users) - users.count(victim)
    assert store.erase_user(victim) == 0
    conn = sqlite3.connect(store.path)  # the append-only guard is back after the erasure
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM events")
    conn.close()


def test_to_dataset(store: SQLiteStore) -> None:
    ds = store.to_dataset("shop")

    assert ds.name == "shop"
    assert list(ds.item_map.ids) == ["p1", "p2", "p3"]
    assert list(ds.user_map.ids) == ["u2", "u1"]  # order of first event
    assert len(ds.interactions) == 4  # the search without an item is not an interaction
    assert ds.metadata["n_events_without_item"] == "1"
    inter = ds.interactions
    u1 = inter.user == ds.user_map.to_index("u1")
    assert ds.item_map.to_externals(inter.item[u1]) == ["p3", "p1"]  # sorted by time
    assert list(inter.event_type[u1]) == [EventType.PURCHASE.code, EventType.CLICK.code]
    assert list(inter.timestamp[u1]) == [T0 + 1, T0 + 2]
    row = ds.catalog.iloc[0]
    assert (row["category"], row["price"], row["stock"]) == ("Beauty > Lips", 12.5, 3)
    assert json.loads(ds.catalog.iloc[1]["attributes"]) == {"颜色": "白", "size": "50ml"}
    assert pd.isna(ds.catalog.iloc[1]["price"]) and pd.isna(ds.catalog.iloc[1]["stock"])


def assert_same_dataset(a: Dataset, b: Dataset) -> None:
    pd.testing.assert_frame_equal(a.catalog, b.catalog)
    assert a.item_map == b.item_map and a.user_map == b.user_map
    for column in ("user", "item", "timestamp", "event_type"):
        np.testing.assert_array_equal(getattr(a.interactions, column), getattr(b.interactions, column))


def test_snapshot_round_trip(store: SQLiteStore, tmp_path: Path) -> None:
    out = store.snapshot(tmp_path / "snap")

    manifest = json.loads((out / "snapshot.json").read_text())
    assert (manifest["n_products"], manifest["n_events"], manifest["max_sequence"]) == (3, 5, 5)
    assert datetime.fromisoformat(manifest["created_at"]).tzinfo is not None
    assert_same_dataset(read_snapshot(out), store.to_dataset())
    assert_same_dataset(load_dataset(out), store.to_dataset())  # detected as a snapshot
    assert_same_dataset(load_dataset(store.path), store.to_dataset())  # detected as a store


def test_snapshot_of_id_only_stream(tmp_path: Path, open_store: Callable[[Path], SQLiteStore]) -> None:
    db = open_store(tmp_path)  # a folder: the store is folder/shopfusion.db
    db.append_events(
        [Event(user_id="s1", item_id="i9", timestamp=T0), Event(user_id="s1", item_id="i8", timestamp=T0)]
    )
    ds = db.to_dataset()
    assert list(ds.item_map.ids) == ["i9", "i8"] and list(ds.catalog["title"]) == ["", ""]
    assert_same_dataset(read_snapshot(db.snapshot(tmp_path / "snap")), ds)
    assert db.path == tmp_path / "shopfusion.db"


def test_snapshot_missing_files_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"lacks catalog\.parquet"):
        read_snapshot(tmp_path)


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ArtifactError, match="not a usable shopfusion store"):
        SQLiteStore(path)


def test_concurrent_appends_from_threads(tmp_path: Path, open_store: Callable[[Path], SQLiteStore]) -> None:
    db = open_store(tmp_path / "t.db")
    acknowledged: list[int] = []

    def writer(worker: int) -> None:
        for batch in range(10):
            evs = [Event(user_id=f"w{worker}", item_id="x", timestamp=T0 + batch * 10 + i) for i in range(10)]
            acknowledged.append(db.append_events(evs))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert db.count_events() == 400 == db.max_sequence()
    assert sorted(acknowledged) == list(range(10, 401, 10))  # each batch got one contiguous range


KILL_WRITER = textwrap.dedent(
    """
    import sys
    from shopfusion.data.schema import Event
    from shopfusion.data.store import SQLiteStore

    store = SQLiteStore(sys.argv[1])
    batch, n = int(sys.argv[2]), 0
    while True:
        events = [
            Event(user_id=f"u{(n + i) % 7}", item_id=f"i{(n + i) % 11}", timestamp=1_700_000_000 + n + i,
                  context={"n": str(n + i)})
            for i in range(batch)
        ]
        print(store.append_events(events), flush=True)
        n += batch
    """
)


def test_acknowledged_events_survive_sigkill(
    tmp_path: Path, open_store: Callable[[Path], SQLiteStore]
) -> None:
    script = tmp_path / "writer.py"
    script.write_text(KILL_WRITER)
    db_path = tmp_path / "kill.db"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db_path), "50"],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    assert proc.stdout is not None
    acknowledged: list[int] = []
    deadline = time.monotonic() + 60
    while len(acknowledged) < 30 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acknowledged.append(int(line))
    os.kill(proc.pid, signal.SIGKILL)  # mid-ingest: the writer never stops on its own
    rest, _ = proc.communicate(timeout=30)
    acknowledged += [int(x) for x in rest.split()]  # acknowledged before the kill, read after it
    assert proc.returncode == -signal.SIGKILL
    assert len(acknowledged) >= 30, "the writer did not get going"

    db = open_store(db_path)
    assert db.integrity_check() == "ok"
    last = max(acknowledged)
    assert db.max_sequence() >= last
    stored = db.events_after(0, limit=last)
    assert [seq for seq, _ in stored] == list(range(1, last + 1))  # nothing acknowledged is missing
    for seq, event in stored:  # and each is the event that was sent
        n = seq - 1
        assert (event.user_id, event.item_id, event.context) == (f"u{n % 7}", f"i{n % 11}", {"n": str(n)})
        assert event.timestamp.timestamp() == T0 + n
    assert db.append_events([Event(user_id="after", item_id="x", timestamp=T0)]) == db.max_sequence()


def test_catalog_plus_unknown_items(tmp_path: Path, open_store: Callable[[Path], SQLiteStore]) -> None:
    db = open_store(tmp_path / "mixed.db")
    db.upsert_products(products()[:1])
    db.append_events(
        [Event(user_id="u", item_id="zz", timestamp=T0), Event(user_id="u", item_id="p1", timestamp=T0)]
    )
    ds = db.to_dataset()
    assert list(ds.item_map.ids) == ["p1", "zz"]
    assert list(ds.catalog["title"]) == ["Red lipstick", ""]
    assert ds.catalog["stock"].dtype == "Int64" and ds.catalog["price"].isna().tolist() == [False, True]
    assert_same_dataset(read_snapshot(db.snapshot(tmp_path / "snap")), ds)


def _open_store(path: Path, barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        SQLiteStore(path).close()
        results.put("ok")
    except Exception as exc:  # reported to the parent, which asserts
        results.put(repr(exc))


def test_processes_opening_a_new_store_at_once_all_start(tmp_path: Path) -> None:
    """``serve --workers 2`` opens one new store from two processes at once: a lock SQLite does
    not wait on failed one of them in 1 start of 8 before the open retried it."""
    context = multiprocessing.get_context("fork")
    for trial in range(30):
        path = tmp_path / f"store-{trial}.db"
        barrier, results = context.Barrier(3), context.Queue()
        processes = [context.Process(target=_open_store, args=(path, barrier, results)) for _ in range(3)]
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=60) for _ in processes]
        for process in processes:
            process.join(timeout=60)
        assert outcomes == ["ok"] * 3, f"trial {trial}: {outcomes}"
