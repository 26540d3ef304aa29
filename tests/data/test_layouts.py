"""Layout loaders on tiny folders made here (bad lines included), plus real data in slow tests."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from shopfusion.data.layouts import load_dataset, load_layout
from shopfusion.data.schema import EventType
from shopfusion.errors import DataError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets"
BEAUTY = SHARED / "amazon-beauty"
YOOCHOOSE = SHARED / "yoochoose-clicks"


def make_s3rec(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "sequences.txt").write_bytes(
        b"10 3 1 3 2\n"  # line 1: items in time order, item 3 twice
        b"7 2 4\n"  # line 2
        b"8\n"  # line 3: a user without items
        b"9 \xff\xfe 1\n"  # line 4: not UTF-8
        b"\n"  # line 5: blank, skipped silently
        b"7 1\n"  # line 6: user 7 again
        b"11 1 5\n"  # line 7
    )
    (folder / "items.tsv").write_text(
        "item_id\tasin\ttitle\n"
        "1\tA1\tL&#39;Or&eacute;al &amp;amp; Co\n"
        "2\tA2\tPlain\n"
        "3\tA3\t\n"  # no title
        "99\tA99\tOnly in the catalog\n"
        "bad line without tabs\n",  # line 6
        encoding="utf-8",
    )
    return folder


def test_s3rec(tmp_path: Path) -> None:
    result = load_layout(make_s3rec(tmp_path / "toy" / "s3rec"))
    ds = result.dataset

    assert ds.name == "toy-s3rec"
    assert list(ds.user_map.ids) == ["10", "7", "11"]  # file order
    assert list(ds.item_map.ids) == ["3", "1", "2", "4", "5", "99"]  # first appearance, then catalog-only
    assert ds.metadata["timestamps"] == "synthetic-order" == ds.interactions.metadata["timestamps"]
    hist = ds.interactions.histories()
    assert [ds.item_map.to_externals(hist.row(u)) for u in range(3)] == [
        ["3", "1", "3", "2"],
        ["2", "4"],
        ["1", "5"],
    ]
    assert list(ds.interactions.timestamp[:4]) == [0.0, 1.0, 2.0, 3.0]
    assert set(ds.interactions.event_type) == {EventType.CLICK.code}
    titles = dict(zip(ds.catalog["item_id"], ds.catalog["title"], strict=True))
    assert titles == {
        "1": "L'Oréal & Co",
        "2": "Plain",
        "3": "",
        "4": "",
        "5": "",
        "99": "Only in the catalog",
    }
    assert json.loads(ds.catalog.iloc[1]["attributes"]) == {"asin": "A1"}
    where = sorted((Path(p.file).name, p.line) for p in result.problems)
    assert where == [("items.tsv", 6), ("sequences.txt", 3), ("sequences.txt", 4), ("sequences.txt", 6)]
    messages = " | ".join(p.message for p in result.problems)
    assert (
        "invalid UTF-8" in messages
        and "has no items" in messages
        and "already has a sequence on line 2" in messages
    )


def test_load_dataset_logs_bad_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ds = load_dataset(make_s3rec(tmp_path / "s3rec"), name="toy")
    assert ds.name == "toy" and ds.n_users == 3
    assert "skipped 4 bad line(s)" in caplog.text


def write_gz(path: Path, text: str) -> Path:
    path.write_bytes(gzip.compress(text.encode("utf-8")))
    return path


def test_timestamped_seconds(tmp_path: Path) -> None:
    write_gz(
        tmp_path / "interactions.tsv.gz",
        "user_id\titem_id\ttimestamp\n"
        "u2\ti1\t1405296000\n"
        "u1\ti2\t1405296100\n"
        "u2\ti3\t1405295000\n"  # earlier than line 2: interactions sort by time
        "u1\ti1\tyesterday\n"  # line 5: bad timestamp
        "u3\ti2\n"  # line 6: too few fields
        "u3\ti2\t1405296200\n",
    )
    write_gz(tmp_path / "items.tsv.gz", "item_id\ttitle\ni1\tCr&egrave;me\ni9\tcatalog only\n")

    result = load_layout(tmp_path)
    ds = result.dataset

    assert ds.metadata["timestamps"] == "seconds"
    assert list(ds.user_map.ids) == ["u2", "u1", "u3"]
    assert list(ds.item_map.ids) == ["i1", "i2", "i3", "i9"]
    hist = ds.interactions.histories()
    assert ds.item_map.to_externals(hist.row(0)) == ["i3", "i1"]
    assert ds.interactions.timestamp.min() == 1405295000
    assert list(ds.catalog["title"]) == ["Crème", "", "", "catalog only"]
    assert sorted((p.line, p.field) for p in result.problems) == [(5, "timestamp"), (6, "(row)")]


def test_timestamped_yoochoose_milliseconds(tmp_path: Path) -> None:
    write_gz(
        tmp_path / "interactions.tsv.gz",
        "session_id\titem_id\ttimestamp\n1\t214\t1396720544263\n1\t215\t1396720552647\n2\t214\t1396720600000\n",
    )

    result = load_layout(tmp_path)
    ds = result.dataset

    assert result.problems == []
    assert ds.metadata["timestamps"] == "milliseconds" and ds.metadata["users"] == "session_id"
    np.testing.assert_allclose(ds.interactions.timestamp, [1396720544.263, 1396720552.647, 1396720600.0])
    assert list(ds.catalog["title"]) == ["", ""] and ds.n_users == 2


def test_timestamped_header_is_checked(tmp_path: Path) -> None:
    write_gz(tmp_path / "interactions.tsv.gz", "a\tb\tc\n1\t2\t3\n")
    with pytest.raises(DataError, match=r"expected a header with columns user_id\|session_id"):
        load_dataset(tmp_path)


def test_export_folder_is_validated(
    tmp_path: Path, write_csv: Callable[..., Path], write_jsonl: Callable[..., Path]
) -> None:
    write_csv(tmp_path / "catalog.csv", ["item_id", "title"], [["p1", "口红"], ["p2", "Mascara"]])
    write_jsonl(
        tmp_path / "events.jsonl",
        [
            {"user_id": "u1", "item_id": "p2", "timestamp": "2024-01-01T00:00:00Z", "type": "purchase"},
            {"user_id": "u1", "item_id": "p404", "timestamp": "2024-01-02T00:00:00Z"},
            "{broken",
        ],
    )

    result = load_layout(tmp_path)

    ds = result.dataset
    assert list(ds.item_map.ids) == ["p1", "p2"] and list(ds.catalog["title"]) == ["口红", "Mascara"]
    assert len(ds.interactions) == 1 and ds.interactions.event_type[0] == EventType.PURCHASE.code
    assert [(p.line, p.field) for p in result.problems] == [(2, "item_id"), (3, "(row)")]


def test_store_folder(tmp_path: Path) -> None:
    from shopfusion.data.schema import Event
    from shopfusion.data.store import SQLiteStore

    with SQLiteStore(tmp_path) as store:
        store.append_events([Event(user_id="s", item_id="i", timestamp=1)])
    assert load_dataset(tmp_path).n_items == 1


def test_unknown_folder_names_what_it_looked_for(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(DataError) as info:
        load_dataset(tmp_path)
    for name in ("sequences.txt", "interactions.tsv.gz", "snapshot.json", "events", "shopfusion.db"):
        assert name in str(info.value)


# -- real data -------------------------------------------------------------------------------------


def need(folder: Path) -> Path:
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent (see shared/datasets/README.md)")
    return folder


@pytest.mark.slow
def test_real_beauty_s3rec() -> None:
    folder = need(BEAUTY / "s3rec")
    start = time.perf_counter()
    result = load_layout(folder)
    elapsed = time.perf_counter() - start
    ds = result.dataset

    assert (ds.n_users, ds.n_items, len(ds.interactions)) == (22_363, 12_101, 198_502)
    assert result.problems == []
    assert elapsed < 3.0, f"loading took {elapsed:.2f} s"
    assert ds.user_map.ids[0] == "1" and ds.item_map.ids[:5] == ("1", "2", "3", "4", "5")
    assert ds.catalog.iloc[0]["title"] == "OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce"
    assert not ds.catalog["title"].str.contains("&amp;").any()
    assert (ds.catalog["title"] != "").sum() == 12_073
    # leave-one-out needs the file order: user 1's sequence is "1 2 3 4 5"
    assert ds.item_map.to_externals(ds.interactions.histories().row(0)) == ["1", "2", "3", "4", "5"]


@pytest.mark.slow
def test_real_beauty_timestamped() -> None:
    ds = load_dataset(need(BEAUTY / "timestamped"))
    assert (ds.n_users, ds.n_items, len(ds.interactions)) == (22_332, 12_086, 198_215)
    assert ds.metadata["timestamps"] == "seconds"


@pytest.mark.slow
def test_real_yoochoose() -> None:
    ds = load_dataset(need(YOOCHOOSE))
    assert (ds.n_users, ds.n_items, len(ds.interactions)) == (17_744, 5_630, 145_716)
    assert ds.metadata["timestamps"] == "milliseconds"
    assert 1.3e9 < ds.interactions.timestamp.min() < ds.interactions.timestamp.max() < 1.5e9


def test_timestamped_buys_file_adds_purchases(tmp_path: Path) -> None:
    from tests_support import write_yoochoose_folder

    from shopfusion.data.schema import EventType

    folder = write_yoochoose_folder(tmp_path / "yc", n_sessions=30)
    ds = load_layout(folder).dataset
    kinds = set(ds.interactions.event_type.tolist())
    assert kinds == {EventType.CLICK.code, EventType.PURCHASE.code}
    assert int((ds.interactions.event_type == EventType.PURCHASE.code).sum()) == 10
    clicks_only = load_layout(write_yoochoose_folder(tmp_path / "yc2", n_sessions=30, buys=False)).dataset
    assert set(clicks_only.interactions.event_type.tolist()) == {EventType.CLICK.code}
