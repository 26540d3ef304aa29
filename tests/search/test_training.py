"""Training queries derived from the catalog: what a shopper would type for an item."""

from __future__ import annotations

import numpy as np

from shopfusion.search.training import KNOWN_ITEM_SIZES, known_item_queries, title_words, typed_words

TITLES = [
    "Alpha Hydrox AHA Enhanced Cream 2 oz.",
    "L'Oreal Expert Absolut Repair Cellular with Lactic Acid, 6.7-Ounce Jar",
    "100 200",
    "",
]


def test_typed_words_leave_out_sizes_but_keep_model_numbers() -> None:
    assert typed_words(TITLES[0]) == ["alpha", "hydrox", "aha", "enhanced", "cream"]
    assert "with" not in typed_words(TITLES[1])
    assert "7-ounce" not in typed_words(TITLES[1]) and "7-ounce" in title_words(TITLES[1])
    assert typed_words(TITLES[2]) == ["100", "200"]
    assert typed_words("Essie 50 Nail Polish, 250ml (Pack of 3)") == ["essie", "50", "nail", "polish", "3"]
    assert typed_words("Product 7") == ["product", "7"]


def test_known_item_queries_are_two_to_four_title_words_in_title_order() -> None:
    queries = known_item_queries(TITLES[:2], 400, np.random.default_rng(0), typo_rate=0.0)
    assert len(queries) == 400 and all(q.kind == "known-item" for q in queries)
    sizes = {len(q.query.split()) for q in queries}
    assert sizes == set(KNOWN_ITEM_SIZES)
    for q in queries:
        words = typed_words(TITLES[int(q.positives[0])])
        positions = [words.index(w) for w in q.query.split()]
        assert positions == sorted(positions), q.query


def test_a_typo_changes_one_word_of_some_queries() -> None:
    queries = known_item_queries(TITLES[:2], 300, np.random.default_rng(1), typo_rate=0.5)
    vocabulary = {w for t in TITLES[:2] for w in typed_words(t)}
    typoed = [q for q in queries if any(w not in vocabulary for w in q.query.split())]
    assert 0.3 < len(typoed) / len(queries) < 0.6
    assert all(sum(w not in vocabulary for w in q.query.split()) == 1 for q in typoed)


def test_half_the_known_items_are_drawn_by_demand() -> None:
    titles = [f"brand{i} product{i} name{i}" for i in range(20)]
    demand = np.zeros(20)
    demand[3] = 100.0
    queries = known_item_queries(titles, 2000, np.random.default_rng(0), demand=demand)
    drawn = np.bincount([int(q.positives[0]) for q in queries], minlength=20) / len(queries)
    assert abs(drawn[3] - (0.5 + 0.5 / 20)) < 0.04  # half by demand, plus its uniform share
    assert all(abs(drawn[i] - 0.5 / 20) < 0.02 for i in range(20) if i != 3)
    uniform = known_item_queries(titles, 2000, np.random.default_rng(0))
    assert np.bincount([int(q.positives[0]) for q in uniform], minlength=20).max() < 200
