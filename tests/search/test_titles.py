"""Title-match features on titles with known answers."""

from __future__ import annotations

import numpy as np

from shopfusion.search.titles import TitleIndex

TITLES = [
    ["korres", "plum", "lip", "butter"],
    ["plum", "lip", "korres"],
    [],
    ["lip", "lip", "balm"],
]
ROWS = np.arange(len(TITLES), dtype=np.int64)


def test_phrase_prefix_share_and_length() -> None:
    phrase, prefix, share, length, *_ = TitleIndex(TITLES).match(["korres", "plum"], ROWS)
    assert phrase.tolist() == [1, 0, 0, 0]
    assert prefix.tolist() == [1, 0, 0, 0]
    assert np.allclose(share, [2 / 4, 2 / 3, 0, 0])
    assert length.tolist() == [4, 3, 0, 3]


def test_a_phrase_inside_the_title_is_not_a_prefix_and_repeats_count_once() -> None:
    phrase, prefix, share, *_ = TitleIndex(TITLES).match(["plum", "lip"], ROWS)
    assert phrase.tolist() == [1, 1, 0, 0] and prefix.tolist() == [0, 1, 0, 0]
    share = TitleIndex(TITLES).match(["lip"], ROWS)[2]
    assert np.allclose(share, [1 / 4, 1 / 3, 0, 1 / 2])  # "lip lip balm": two distinct words


def test_a_word_no_title_has_rules_out_a_phrase_but_not_the_share() -> None:
    phrase, _, share, *_ = TitleIndex(TITLES).match(["korres", "zzz"], ROWS[:2])
    assert phrase.tolist() == [0, 0] and np.allclose(share, [1 / 4, 1 / 3])
    empty = TitleIndex(TITLES).match([], ROWS)
    assert all(not column.any() for column in empty[:3]) and empty[3].tolist() == [4, 3, 0, 3]


def test_word_order_span_and_rarity_weighted_coverage() -> None:
    *_, in_order, weighted, span = TitleIndex(TITLES).match(["korres", "lip"], ROWS)
    assert in_order.tolist() == [1, 0, 0, 0]  # "plum lip korres" holds both words, in the other order
    assert np.allclose(span[:2], [3 / 2, 2 / 2]) and np.isnan(span[2:]).all()
    # "lip" is in three titles, "korres" in two: holding only "lip" is worth less than half
    only_lip = TitleIndex(TITLES).match(["korres", "lip"], ROWS[3:])[5]
    assert weighted[0] == weighted[1] == 1.0 and 0 < only_lip[0] < 0.5
    # a word no title has weighs as much as the rarest: the coverage of a typo'd query drops
    typo = TitleIndex(TITLES).match(["korres", "lipp"], ROWS[:1])[5]
    assert 0 < typo[0] < 0.5
