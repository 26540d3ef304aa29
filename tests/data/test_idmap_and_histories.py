from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shopfusion.data.cleaning import clean_text
from shopfusion.data.idmap import IdMap
from shopfusion.data.interactions import Histories
from shopfusion.errors import ArtifactError, DataError, UnknownIdError


def test_idmap_is_a_stable_bijection(tmp_path: Path) -> None:
    m = IdMap("item", ["b", "a"])
    assert m.add_many(["a", "c", "b"]).tolist() == [1, 2, 0]
    assert m.to_externals([2, 0]) == ["c", "b"]
    m.save(tmp_path / "items.txt")
    assert IdMap.load("item", tmp_path / "items.txt") == m


def test_idmap_unknown_id_says_what_to_do() -> None:
    with pytest.raises(UnknownIdError, match="ingest it first"):
        IdMap("item", ["a"]).to_index("电视-1")
    assert IdMap("item", ["a"]).to_indices(["a", "zz"], missing=-1).tolist() == [0, -1]


def test_idmap_refuses_a_corrupt_file(tmp_path: Path) -> None:
    (tmp_path / "ids.txt").write_text("a\na\n")
    with pytest.raises(ArtifactError, match="duplicate"):
        IdMap.load("item", tmp_path / "ids.txt")


def test_histories_recency_weights_keep_the_latest_repeat() -> None:
    h = Histories.from_lists([[1, 2, 1]], n_items=3)
    weights = h.to_csr(recency_half_life=1.0).toarray()[0]
    np.testing.assert_allclose(weights, [0.0, 1.0, 0.5])
    np.testing.assert_allclose(h.to_csr().toarray()[0], [0, 1, 1])


def test_histories_drop_last_and_last() -> None:
    h = Histories.from_lists([[1, 2, 3], [4]], n_items=5)
    assert h.drop_last(1).row(0).tolist() == [1, 2]
    assert h.drop_last(2).row(1).tolist() == []
    assert h.last(2).tolist() == [2, -1]


def test_histories_refuse_items_outside_the_catalog() -> None:
    with pytest.raises(DataError, match=r"\[0, 3\)"):
        Histories.from_lists([[3]], n_items=3)


def test_clean_text_handles_entities_width_and_space() -> None:
    assert clean_text("Shampoo &amp;amp; Conditioner\u00a0 ") == "Shampoo & Conditioner"
    assert clean_text("ＳＯＮＹ　电视") == "SONY 电视"
