"""Durable embedded storage: a SQLite catalog plus an append-only event log.

An event is acknowledged (``append_events`` returns its sequence number) only
after its transaction is committed with ``synchronous=FULL`` in WAL mode, so an
acknowledged event survives a crash of the process or of the machine.
Training reads a columnar view: :meth:`SQLiteStore.to_dataset`, or a Parquet
snapshot written by :meth:`SQLiteStore.snapshot` and read back by
:func:`read_snapshot`; both give the same :class:`Dataset`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from shopfusion.data.dataset import CATALOG_COLUMNS, Dataset, empty_catalog
from shopfusion.data.idmap import IdMap
from shopfusion.data.interactions import Interactions
from shopfusion.data.schema import Event, EventType, Product
from shopfusion.errors import ArtifactError, DataError, EmptyDataError

#: Default file name of a store inside a folder.
STORE_FILENAME = "shopfusion.db"
SCHEMA_VERSION = 1
SNAPSHOT_FILES = ("catalog.parquet", "events.parquet", "snapshot.json")

#: Columns of the event frame (store reads, snapshots); ``ts`` is UTC seconds.
EVENT_COLUMNS = ("seq", "user_id", "item_id", "type", "ts", "query", "position", "session_id", "context")

_NO_DELETE = """CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END"""

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS products (
        item_id TEXT PRIMARY KEY, title TEXT NOT NULL, description TEXT NOT NULL,
        category TEXT NOT NULL, brand TEXT NOT NULL, price REAL, currency TEXT NOT NULL,
        stock INTEGER, image TEXT NOT NULL, attributes TEXT NOT NULL, language TEXT NOT NULL,
        updated_at REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL, item_id TEXT, type TEXT NOT NULL,
        ts REAL NOT NULL, query TEXT NOT NULL, position INTEGER, session_id TEXT NOT NULL,
        context TEXT NOT NULL)""",
    # The log is append-only: sequence numbers once acknowledged always mean the same event.
    """CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END""",
    _NO_DELETE,
)

_UPSERT = """
INSERT INTO products (item_id, title, description, category, brand, price, currency, stock, image,
                      attributes, language, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (item_id) DO UPDATE SET
    title = excluded.title, description = excluded.description, category = excluded.category,
    brand = excluded.brand, price = excluded.price, currency = excluded.currency, stock = excluded.stock,
    image = excluded.image, attributes = excluded.attributes, language = excluded.language,
    updated_at = excluded.updated_at
"""

_APPEND = """
INSERT INTO events (user_id, item_id, type, ts, query, position, session_id, context)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""


def store_file(path: Path) -> Path:
    """The database file of a store given as a file or as a folder holding ``shopfusion.db``."""
    return path / STORE_FILENAME if path.is_dir() else path


class SQLiteStore:
    """Catalog (upserted products) and append-only event log in one SQLite file.

    One writer at a time; every method may be called from any thread.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = store_file(Path(path))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        try:
            self._open()
        except BaseException as exc:
            self._conn.close()
            if not isinstance(exc, sqlite3.DatabaseError):
                raise
            raise ArtifactError(
                f"{self.path} is not a usable shopfusion store ({exc}); point --store at a new file "
                "or restore the database from a backup"
            ) from None

    def _open(self) -> None:
        """WAL mode and the schema. Processes opening a new store at once (``serve --workers 2``)
        can find it locked without SQLite's busy wait applying (switching the journal mode): one
        of them then failed to start, 1 start in 8 (test). Such a lock is retried, up to the
        connection's 30 s timeout."""
        deadline = time.monotonic() + 30.0
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=FULL")
                self._init_schema()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _init_schema(self) -> None:
        with self._transaction() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise ArtifactError(
                    f"{self.path} has store schema {row[0]}, this shopfusion reads {SCHEMA_VERSION}; "
                    "upgrade shopfusion or re-ingest into a new store"
                )

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """An IMMEDIATE transaction under the lock; committed (durably) when the block ends."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # -- writes --------------------------------------------------------------------------------

    def upsert_products(self, products: Iterable[Product]) -> int:
        """Insert or replace products by ``item_id``; returns the count.

        A replaced item keeps its position in the catalog (its rowid).
        """
        now = datetime.now(UTC).timestamp()
        rows = [_product_row(p, now) for p in products]
        with self._transaction() as conn:
            conn.executemany(_UPSERT, rows)
        return len(rows)

    def append_events(self, events: Iterable[Event]) -> int:
        """Append events in one transaction; returns the sequence number of the last one.

        It returns only after the commit is on disk. With no events it returns :meth:`max_sequence`.
        """
        rows = [_event_row(e) for e in events]
        if not rows:
            return self.max_sequence()
        with self._transaction() as conn:
            conn.executemany(_APPEND, rows)
            last = conn.execute("SELECT last_insert_rowid()").fetchone()
        return int(last[0])

    def erase_user(self, user_id: str) -> int:
        """Delete every event of ``user_id`` (a shopper's right to erasure); returns how many.

        The one deletion the append-only log allows: the guard trigger is lifted inside the same
        transaction, so no other writer can delete meanwhile and the guard is back on commit.
        """
        with self._transaction() as conn:
            conn.execute("DROP TRIGGER events_no_delete")
            deleted = conn.execute("DELETE FROM events WHERE user_id = ?", (user_id,)).rowcount
            conn.execute(_NO_DELETE)
        return int(deleted)

    # -- reads ---------------------------------------------------------------------------------

    def _scalar(self, sql: str) -> Any:
        with self._lock:
            return self._conn.execute(sql).fetchone()[0]

    def count_products(self) -> int:
        return int(self._scalar("SELECT COUNT(*) FROM products"))

    def count_events(self) -> int:
        return int(self._scalar("SELECT COUNT(*) FROM events"))

    def max_sequence(self) -> int:
        """The sequence number of the last acknowledged event (0 for an empty log)."""
        return int(self._scalar("SELECT COALESCE(MAX(seq), 0) FROM events"))

    def item_ids(self) -> set[str]:
        with self._lock:
            return {row[0] for row in self._conn.execute("SELECT item_id FROM products")}

    def get_product(self, item_id: str) -> Product | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT item_id, title, description, category, brand, price, currency, stock, image, "
                "attributes, language FROM products WHERE item_id = ?",
                (item_id,),
            ).fetchone()
        if row is None:
            return None
        data = dict(zip(CATALOG_COLUMNS, row, strict=True))
        data["category"], data["attributes"] = json.loads(row[3]), json.loads(row[9])
        return Product.model_validate(data)

    def events_after(self, seq: int, limit: int = 1000) -> list[tuple[int, Event]]:
        """Up to ``limit`` events with a sequence number above ``seq``, in order (for tailing the log)."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {', '.join(EVENT_COLUMNS)} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()
        return [(int(r[0]), _event_from_row(r)) for r in rows]

    def integrity_check(self) -> str:
        """``"ok"`` when SQLite finds the file consistent, else its report."""
        with self._lock:
            return "\n".join(str(r[0]) for r in self._conn.execute("PRAGMA integrity_check"))

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame, int]:
        """Catalog frame, event frame and max sequence number, read in one consistent transaction."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                products = pd.read_sql_query("SELECT * FROM products ORDER BY rowid", self._conn)
                events = pd.read_sql_query(
                    f"SELECT {', '.join(EVENT_COLUMNS)} FROM events ORDER BY seq", self._conn
                )
            finally:
                self._conn.execute("COMMIT")
        return _catalog_frame(products), _event_frame(events), int(events["seq"].max()) if len(events) else 0

    # -- columnar exports ----------------------------------------------------------------------

    def to_dataset(self, name: str | None = None) -> Dataset:
        """The whole store as a :class:`Dataset` (catalog order = first ingestion order)."""
        catalog, events, max_seq = self.frames()
        return dataset_from_frames(
            name or self.path.stem, catalog, events, {"source": "sqlite", "max_sequence": str(max_seq)}
        )

    def snapshot(self, out_dir: Path) -> Path:
        """Write ``catalog.parquet``, ``events.parquet`` and ``snapshot.json`` to ``out_dir``; returns it."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        catalog, events, max_seq = self.frames()
        out_dir.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pandas(catalog, preserve_index=False), out_dir / "catalog.parquet")
        pq.write_table(pa.Table.from_pandas(events, preserve_index=False), out_dir / "events.parquet")
        manifest = {
            "format": "shopfusion-snapshot",
            "schema_version": SCHEMA_VERSION,
            "n_products": len(catalog),
            "n_events": len(events),
            "max_sequence": max_seq,
            "created_at": datetime.now(UTC).isoformat(),
            "store": str(self.path),
        }
        (out_dir / "snapshot.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        return out_dir


def read_snapshot(folder: Path, name: str | None = None) -> Dataset:
    """The :class:`Dataset` of a folder written by :meth:`SQLiteStore.snapshot`."""
    missing = [f for f in SNAPSHOT_FILES if not (folder / f).is_file()]
    if missing:
        raise ArtifactError(
            f"snapshot {folder} lacks {', '.join(missing)}; write it again with store.snapshot()"
        )
    manifest = json.loads((folder / "snapshot.json").read_text(encoding="utf-8"))
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise ArtifactError(
            f"snapshot {folder} has schema {manifest.get('schema_version')}, expected {SCHEMA_VERSION}; "
            "write it again with this version"
        )
    catalog = _catalog_frame(pd.read_parquet(folder / "catalog.parquet"))
    events = _event_frame(pd.read_parquet(folder / "events.parquet"))
    meta = {"source": "snapshot", "max_sequence": str(manifest["max_sequence"])}
    return dataset_from_frames(name or folder.name, catalog, events, meta)


# -- rows <-> records ----------------------------------------------------------------------------


def _product_row(p: Product, now: float) -> tuple[Any, ...]:
    return (
        p.item_id,
        p.title,
        p.description,
        json.dumps(p.category, ensure_ascii=False),
        p.brand,
        p.price,
        p.currency,
        p.stock,
        p.image,
        json.dumps(p.attributes, ensure_ascii=False, sort_keys=True),
        p.language,
        now,
    )


def _event_row(e: Event) -> tuple[Any, ...]:
    return (
        e.user_id,
        e.item_id,
        e.type.value,
        e.timestamp.timestamp(),
        e.query,
        e.position,
        e.session_id,
        json.dumps(e.context, ensure_ascii=False, sort_keys=True),
    )


def _event_from_row(row: Sequence[Any]) -> Event:
    _, user, item, kind, ts, query, position, session, context = row
    return Event(
        user_id=user,
        item_id=item,
        type=EventType(kind),
        timestamp=datetime.fromtimestamp(ts, tz=UTC),
        query=query,
        position=position,
        session_id=session,
        context=json.loads(context),
    )


# -- frames -> Dataset ---------------------------------------------------------------------------


def _catalog_frame(raw: pd.DataFrame) -> pd.DataFrame:
    """Store/snapshot catalog rows in :data:`CATALOG_COLUMNS` order with canonical dtypes."""
    frame = pd.DataFrame({c: raw[c] if c in raw else pd.Series(dtype=object) for c in CATALOG_COLUMNS})
    frame["price"] = pd.to_numeric(frame["price"]).astype("float64")
    frame["stock"] = pd.to_numeric(frame["stock"]).astype("Int64")
    for col in (
        "item_id",
        "title",
        "description",
        "category",
        "brand",
        "currency",
        "image",
        "attributes",
        "language",
    ):
        frame[col] = frame[col].astype(str)
    return frame.reset_index(drop=True)


def _event_frame(raw: pd.DataFrame) -> pd.DataFrame:
    frame = pd.DataFrame({c: raw[c] for c in EVENT_COLUMNS})
    frame["seq"] = frame["seq"].astype("int64")
    frame["ts"] = frame["ts"].astype("float64")
    frame["position"] = pd.to_numeric(frame["position"]).astype("Int64")
    return frame.reset_index(drop=True)


def products_frame(products: Sequence[Product]) -> pd.DataFrame:
    """The catalog frame (store format: JSON ``category``/``attributes``) of validated products."""
    rows = [_product_row(p, 0.0)[:-1] for p in products]
    return _catalog_frame(pd.DataFrame(rows, columns=list(CATALOG_COLUMNS)))


def events_frame(events: Sequence[Event]) -> pd.DataFrame:
    """The event frame of validated events, numbered ``1..n`` in the given order."""
    rows = [(i + 1, *_event_row(e)) for i, e in enumerate(events)]
    return _event_frame(pd.DataFrame(rows, columns=list(EVENT_COLUMNS)))


def dataset_from_frames(
    name: str, catalog: pd.DataFrame, events: pd.DataFrame, metadata: dict[str, str] | None = None
) -> Dataset:
    """Build a :class:`Dataset` from store-format frames (vectorised; no Python loop over events).

    Items: catalog order, then items seen only in events (id-only streams). Users: order of
    first event. Events without an item (searches with no click) are not interactions.
    """
    with_item = events[events["item_id"].notna()]
    if len(catalog) == 0 and len(with_item) == 0:
        raise EmptyDataError(f"dataset {name!r} has no products and no events; ingest some data first")
    catalog_ids = pd.Index(catalog["item_id"].astype(str))
    if catalog_ids.has_duplicates:
        raise DataError(f"dataset {name!r}: the catalog repeats item ids; keep one row per item_id")
    item_idx = catalog_ids.get_indexer(pd.Index(with_item["item_id"].astype(str)))
    extra_codes, extra_ids = pd.factorize(with_item["item_id"].astype(str)[item_idx < 0])
    item_idx[item_idx < 0] = extra_codes + len(catalog_ids)
    user_idx, user_ids = pd.factorize(with_item["user_id"].astype(str))
    codes = {t.value: t.code for t in EventType}
    interactions = Interactions(
        user=np.asarray(user_idx, dtype=np.int64),
        item=np.asarray(item_idx, dtype=np.int64),
        timestamp=with_item["ts"].to_numpy(dtype=np.float64),
        event_type=np.asarray(with_item["type"].map(codes), dtype=np.int8),
        user_map=IdMap("user", list(user_ids)),
        item_map=IdMap("item", [*catalog_ids, *extra_ids]),
        metadata={"timestamps": "utc-seconds"},
    )
    frame = _dataset_catalog(catalog, list(extra_ids))
    meta = {**(metadata or {}), "n_events_without_item": str(len(events) - len(with_item))}
    return Dataset(name, frame, interactions, meta, _search_clicks(with_item, item_idx))


def _search_clicks(with_item: pd.DataFrame, item_idx: npt.NDArray[np.int64]) -> list[tuple[str, int]]:
    """(query, item index) of the events that followed a search and show interest (not mere views)."""
    if "query" not in with_item:
        return []
    queries = with_item["query"].fillna("").astype(str).to_numpy()
    wanted = {EventType.CLICK.value, EventType.ADD_TO_CART.value, EventType.PURCHASE.value}
    keep = (queries != "") & with_item["type"].isin(wanted).to_numpy()
    return [(str(q), int(i)) for q, i in zip(queries[keep], np.asarray(item_idx)[keep], strict=True)]


def _dataset_catalog(catalog: pd.DataFrame, extra_ids: list[str]) -> pd.DataFrame:
    """Store format -> :class:`Dataset` format: category path joined with ' > '; id-only rows appended."""
    frame = catalog.copy()
    frame["category"] = [" > ".join(json.loads(c)) if c else "" for c in frame["category"]]
    if extra_ids:
        # Column-wise: pd.concat warns about all-NA columns on some pandas versions.
        extra = empty_catalog(extra_ids)
        frame = pd.DataFrame({c: [*frame[c], *extra[c]] for c in CATALOG_COLUMNS})
        for col in CATALOG_COLUMNS:
            if col not in ("price", "stock"):
                frame[col] = frame[col].astype(str)
    frame["stock"] = frame["stock"].astype("Int64")
    frame["price"] = frame["price"].astype("float64")
    return frame.reset_index(drop=True)
