"""Load benchmark and export folders into a :class:`Dataset`, whatever their layout.

:func:`load_dataset` detects the layout of a folder:

- ``s3rec``: ``sequences.txt`` (``user item item ...`` in time order) and an optional
  ``items.tsv`` (``item_id, asin, title``). There are no timestamps: the position in
  the sequence becomes synthetic seconds (metadata ``timestamps="synthetic-order"``).
- ``timestamped``: ``interactions.tsv.gz`` (``user_id|session_id, item_id, timestamp`` in
  seconds, or milliseconds as in yoochoose, told apart by magnitude), an optional
  ``buys.tsv.gz`` (purchases, same columns) and an optional ``items.tsv.gz`` (``item_id, title``).
- a Parquet snapshot of a store (``snapshot.json`` + ``catalog.parquet`` + ``events.parquet``);
- a shopfusion export (``events.{jsonl,csv,parquet}`` and optionally ``catalog.*``), validated
  row by row;
- a SQLite store (a ``.db`` file, or a folder holding ``shopfusion.db``).

Benchmark files are read vectorised (no per-row validation) but bad lines are still
reported as :class:`RowProblem` records and skipped. Ids keep their file strings; users
are indexed in file order, items in order of first appearance, then catalog-only items.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from shopfusion.data.cleaning import clean_text
from shopfusion.data.dataset import Dataset, empty_catalog
from shopfusion.data.idmap import IdMap
from shopfusion.data.interactions import Interactions
from shopfusion.data.readers import read_events, read_products
from shopfusion.data.schema import EventType
from shopfusion.data.store import (
    STORE_FILENAME,
    SQLiteStore,
    dataset_from_frames,
    events_frame,
    products_frame,
    read_snapshot,
)
from shopfusion.data.validation import ROW, RowProblem
from shopfusion.errors import DataError, EmptyDataError

logger = logging.getLogger(__name__)

_EXPORT_EXTENSIONS = (".parquet", ".jsonl", ".jsonl.gz", ".ndjson", ".csv", ".csv.gz")
_MS_THRESHOLD = 1e11  # seconds since 1970 pass 1e11 only in the year 5138


@dataclass
class LayoutResult:
    """A loaded dataset and the lines that were skipped on the way."""

    dataset: Dataset
    problems: list[RowProblem] = field(default_factory=list)


def load_dataset(path: Path, name: str | None = None) -> Dataset:
    """Load whatever dataset ``path`` holds (see the module docstring); bad lines are logged and skipped."""
    result = load_layout(path, name)
    if result.problems:
        logger.warning(
            "%s: skipped %d bad line(s), first: %s", path, len(result.problems), result.problems[0]
        )
    return result.dataset


def load_layout(path: Path, name: str | None = None) -> LayoutResult:
    """Like :func:`load_dataset` but hands back the problems instead of logging them."""
    path = Path(path)
    loader = detect_layout(path)
    return loader(path, name or _default_name(path))


def detect_layout(path: Path) -> Callable[[Path, str], LayoutResult]:
    """The loader for ``path``; raises :class:`DataError` naming what it looked for."""
    if path.is_file() and path.suffix.lower() in (".db", ".sqlite", ".sqlite3"):
        return load_store
    if path.is_dir():
        if (path / "sequences.txt").is_file():
            return load_s3rec
        if (path / "interactions.tsv.gz").is_file() or (path / "interactions.tsv").is_file():
            return load_timestamped
        if (path / "snapshot.json").is_file():
            return load_snapshot
        if _find(path, "events") is not None:
            return load_export
        if (path / STORE_FILENAME).is_file():
            return load_store
    raise DataError(
        f"cannot tell what dataset {path} holds: looked for sequences.txt (s3rec), interactions.tsv.gz "
        f"(timestamped), snapshot.json (store snapshot), events{{{','.join(_EXPORT_EXTENSIONS)}}} "
        f"(export) and {STORE_FILENAME} or a .db file (SQLite store); point at a folder with one of them"
    )


def _default_name(path: Path) -> str:
    if path.name in ("s3rec", "timestamped") and path.parent.name:
        return f"{path.parent.name}-{path.name}"
    return path.stem if path.is_file() else path.name


def _find(folder: Path, stem: str) -> Path | None:
    for ext in _EXPORT_EXTENSIONS:
        if (folder / f"{stem}{ext}").is_file():
            return folder / f"{stem}{ext}"
    return None


# -- stores and exports --------------------------------------------------------------------------


def load_store(path: Path, name: str) -> LayoutResult:
    with SQLiteStore(path) as store:
        return LayoutResult(store.to_dataset(name))


def load_snapshot(path: Path, name: str) -> LayoutResult:
    return LayoutResult(read_snapshot(path, name))


def load_export(path: Path, name: str) -> LayoutResult:
    """An export folder, validated row by row like ``shopfusion ingest`` does."""
    events_path = _find(path, "events")
    if events_path is None:
        raise DataError(f"{path} has no events{{{','.join(_EXPORT_EXTENSIONS)}}}; export the events there")
    catalog_path = _find(path, "catalog")
    problems: list[RowProblem] = []
    products = read_products(catalog_path) if catalog_path else None
    known = {p.item_id for p in products.records} if products else None
    events = read_events(events_path, known_items=known)
    for result in (products, events):
        if result is not None:
            problems.extend(result.problems)
    catalog = products_frame(products.records if products else [])
    dataset = dataset_from_frames(name, catalog, events_frame(events.records), {"source": "export"})
    return LayoutResult(dataset, problems)


# -- text tables ---------------------------------------------------------------------------------


def _lines(path: Path, problems: list[RowProblem]) -> list[str]:
    """The lines of a (gzipped) UTF-8 file; undecodable lines are reported and blanked."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    try:
        return [line.rstrip("\r") for line in raw.decode("utf-8").split("\n")]
    except UnicodeDecodeError:
        pass
    lines = []
    for number, chunk in enumerate(raw.split(b"\n"), 1):
        try:
            lines.append(chunk.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as exc:
            problems.append(
                RowProblem(
                    str(path),
                    number,
                    ROW,
                    f"invalid UTF-8 (byte 0x{chunk[exc.start]:02x}); re-save the file as UTF-8",
                )
            )
            lines.append("")
    return lines


@dataclass
class _Table:
    columns: dict[str, list[str]]
    line: list[int]  # 1-based file line of each row


def _read_tsv(path: Path, expected: tuple[tuple[str, ...], ...], problems: list[RowProblem]) -> _Table:
    """A tab-separated file with a header; ``expected[i]`` lists accepted names of column ``i``.

    The last column may hold tabs (titles); rows with too few fields are reported and skipped.
    """
    lines = _lines(path, problems)
    header = lines[0].split("\t") if lines else []
    if len(header) < len(expected) or any(
        h.strip() not in names for h, names in zip(header, expected, strict=False)
    ):
        wanted = ", ".join("|".join(names) for names in expected)
        raise DataError(
            f"{path}:1: expected a header with columns {wanted}, got {header!r}; fix the first line"
        )
    n = len(expected)
    parts = [line.split("\t", n - 1) for line in lines[1:]]
    good = [i for i, p in enumerate(parts) if len(p) == n and p[0] != ""]
    for i, p in enumerate(parts):
        if (len(p) != n or p[0] == "") and lines[i + 1].strip():
            problems.append(
                RowProblem(
                    str(path),
                    i + 2,
                    ROW,
                    f"expected {n} tab-separated values and an id, got {len(p)}; fix or delete the line",
                )
            )
    names = [h.strip() for h in header[:n]]
    columns = {name: [parts[i][j] for i in good] for j, name in enumerate(names)}
    return _Table(columns, [i + 2 for i in good])


def _catalog(
    item_ids: list[str], titles: dict[str, str], attributes: dict[str, str] | None = None
) -> pd.DataFrame:
    frame = empty_catalog(item_ids)
    frame["title"] = [titles.get(i, "") for i in item_ids]
    if attributes:
        frame["attributes"] = [attributes.get(i, "{}") for i in item_ids]
    return frame


def _interactions(
    user: npt.NDArray[np.int64],
    item: npt.NDArray[np.int64],
    timestamp: npt.NDArray[np.float64],
    user_ids: list[str],
    item_ids: list[str],
    metadata: dict[str, str],
    event_type: npt.NDArray[np.int8] | None = None,
) -> Interactions:
    return Interactions(
        user=user,
        item=item,
        timestamp=timestamp,
        event_type=np.full(len(user), EventType.CLICK.code, dtype=np.int8)
        if event_type is None
        else event_type,
        user_map=IdMap("user", user_ids),
        item_map=IdMap("item", item_ids),
        metadata=dict(metadata),
    )


def _item_order(seen: pd.Index, catalog_ids: list[str]) -> list[str]:
    """Items seen in interactions (first-appearance order), then catalog-only items."""
    seen_set = set(seen)
    return [*seen, *(i for i in dict.fromkeys(catalog_ids) if i not in seen_set)]


# -- s3rec ---------------------------------------------------------------------------------------


def load_s3rec(folder: Path, name: str) -> LayoutResult:
    problems: list[RowProblem] = []
    users, lengths, items = _read_sequences(folder / "sequences.txt", problems)
    if not users:
        raise EmptyDataError(f"{folder / 'sequences.txt'} holds no valid sequence; check the file")
    codes, seen = pd.factorize(np.asarray(items, dtype=object))
    titles: dict[str, str] = {}
    attributes: dict[str, str] = {}
    if (folder / "items.tsv").is_file():
        table = _read_tsv(folder / "items.tsv", (("item_id",), ("asin",), ("title",)), problems)
        cols = table.columns
        titles = dict(zip(cols["item_id"], map(clean_text, cols["title"]), strict=True))
        attributes = {i: json.dumps({"asin": a}) for i, a in zip(cols["item_id"], cols["asin"], strict=True)}
    if (folder / "item2attributes.json").is_file():
        attributes = _merge_attribute_ids(folder / "item2attributes.json", attributes, problems)
    item_ids = _item_order(pd.Index(seen), list(titles))
    len_arr = np.asarray(lengths, dtype=np.int64)
    starts = np.repeat(np.cumsum(len_arr) - len_arr, len_arr)
    position = (np.arange(len(items), dtype=np.int64) - starts).astype(np.float64)
    meta = {"layout": "s3rec", "timestamps": "synthetic-order", "source": str(folder)}
    interactions = _interactions(
        np.repeat(np.arange(len(users), dtype=np.int64), len_arr),
        codes.astype(np.int64),
        position,
        users,
        item_ids,
        meta,
    )
    catalog = _catalog(item_ids, titles, attributes)
    return LayoutResult(Dataset(name, catalog, interactions, dict(meta)), problems)


def _merge_attribute_ids(
    path: Path, attributes: dict[str, str], problems: list[RowProblem]
) -> dict[str, str]:
    """S3-Rec's ``item2attributes.json`` (item -> brand/category ids, names unknown) as an
    ``attribute_ids`` attribute: space-separated ids that features can match on."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        problems.append(RowProblem(str(path), 1, ROW, f"not valid JSON ({exc}); attributes ignored"))
        return attributes
    merged = dict(attributes)
    for item, ids in raw.items() if isinstance(raw, dict) else ():
        if not isinstance(ids, list):
            continue
        fields = json.loads(merged.get(str(item), "{}"))
        fields["attribute_ids"] = " ".join(str(i) for i in ids)
        merged[str(item)] = json.dumps(fields)
    return merged


def _read_sequences(path: Path, problems: list[RowProblem]) -> tuple[list[str], list[int], list[str]]:
    users: list[str] = []
    lengths: list[int] = []
    items: list[str] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(_lines(path, problems), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            problems.append(
                RowProblem(
                    str(path), number, ROW, f"user {parts[0]!r} has no items; add them or delete the line"
                )
            )
            continue
        seen = first_line.setdefault(parts[0], number)
        if seen != number:
            problems.append(
                RowProblem(
                    str(path),
                    number,
                    "user_id",
                    f"user {parts[0]!r} already has a sequence on line {seen}; merge the two lines",
                )
            )
            continue
        users.append(parts[0])
        lengths.append(len(parts) - 1)
        items.extend(parts[1:])
    return users, lengths, items


# -- timestamped (Amazon SeqRec benchmark, yoochoose) ----------------------------------------------


def load_timestamped(folder: Path, name: str) -> LayoutResult:
    """Clicks from ``interactions.tsv[.gz]``; purchases, when the stream has them as yoochoose's
    RecSys 2015 release does, from ``buys.tsv[.gz]`` in the same three columns."""
    problems: list[RowProblem] = []
    path = folder / "interactions.tsv.gz"
    path = path if path.is_file() else folder / "interactions.tsv"
    streams = [(path, EventType.CLICK)]
    buys = next((p for p in (folder / "buys.tsv.gz", folder / "buys.tsv") if p.is_file()), None)
    if buys is not None:
        streams.append((buys, EventType.PURCHASE))
    users_parts, items_parts, ts_parts, kind_parts = [], [], [], []
    user_col, unit = "user_id", "seconds"
    for stream_path, kind in streams:
        table = _read_tsv(stream_path, (("user_id", "session_id"), ("item_id",), ("timestamp",)), problems)
        user_col = "user_id" if "user_id" in table.columns else "session_id"
        ts, unit = _timestamps(stream_path, table, problems)
        ok = ~np.isnan(ts)
        users_parts.append(np.asarray(table.columns[user_col], dtype=object)[ok])
        items_parts.append(np.asarray(table.columns["item_id"], dtype=object)[ok])
        ts_parts.append(ts[ok])
        kind_parts.append(np.full(int(ok.sum()), kind.code, dtype=np.int8))
    users, items = np.concatenate(users_parts), np.concatenate(items_parts)
    if not len(users):
        raise EmptyDataError(f"{path} holds no valid interaction; check the file")
    user_codes, user_ids = pd.factorize(users)
    item_codes, seen = pd.factorize(items)
    titles: dict[str, str] = {}
    items_path = next((p for p in (folder / "items.tsv.gz", folder / "items.tsv") if p.is_file()), None)
    if items_path is not None:
        items_table = _read_tsv(items_path, (("item_id",), ("title",)), problems)
        cols = items_table.columns
        titles = dict(zip(cols["item_id"], map(clean_text, cols["title"]), strict=True))
    item_ids = _item_order(pd.Index(seen), list(titles))
    meta = {"layout": "timestamped", "timestamps": unit, "users": user_col, "source": str(folder)}
    interactions = _interactions(
        user_codes.astype(np.int64),
        item_codes.astype(np.int64),
        np.concatenate(ts_parts),
        list(user_ids),
        item_ids,
        meta,
        np.concatenate(kind_parts),
    )
    return LayoutResult(Dataset(name, _catalog(item_ids, titles), interactions, dict(meta)), problems)


def _timestamps(path: Path, table: _Table, problems: list[RowProblem]) -> tuple[npt.NDArray[np.float64], str]:
    """UTC seconds (NaN where unreadable, reported) and the unit the file used."""
    raw = pd.Series(table.columns["timestamp"], dtype=object)
    ts = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    for i in np.flatnonzero(np.isnan(ts)):
        problems.append(
            RowProblem(
                str(path),
                table.line[i],
                "timestamp",
                f"{raw.iloc[i]!r} is not a number of seconds or milliseconds since the epoch; fix the line",
            )
        )
    valid = ts[~np.isnan(ts)]
    if len(valid) and float(np.median(valid)) > _MS_THRESHOLD:
        return ts / 1000.0, "milliseconds"
    return ts, "seconds"
