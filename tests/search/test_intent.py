"""Category intent: P(category | query) from catalog words and from search clicks."""

from __future__ import annotations

import numpy as np

from shopfusion.search.intent import CategoryIntent

TOKENS = [["red", "lipstick"], ["matte", "lipstick"], ["oled", "tv"], ["smart", "tv"], ["tv", "stand"]]
LABELS = [["Lips"], ["Lips"], ["TV"], ["TV"], ["Furniture"]]


def test_catalog_words_predict_their_category() -> None:
    intent = CategoryIntent().fit(TOKENS, LABELS)
    p = intent.predict(["lipstick"])
    assert intent.labels_[int(np.argmax(p))] == "Lips"
    assert abs(float(p.sum()) - 1.0) < 1e-5
    assert intent.labels_[int(np.argmax(intent.predict(["oled"])))] == "TV"
    match = intent.item_match(intent.predict(["tv"]))
    assert match[2] > match[0] and match[3] > match[1]


def test_search_clicks_teach_words_the_catalog_lacks() -> None:
    before = CategoryIntent().fit(TOKENS, LABELS)
    after = CategoryIntent().fit(TOKENS, LABELS, events=[(["电视"], 2), (["电视"], 3)])
    assert after.labels_[int(np.argmax(after.predict(["电视"])))] == "TV"
    # Unknown to the catalog alone, the word leaves the prior unchanged.
    assert np.allclose(before.predict(["电视"]), before.predict([]))


def test_round_trip_through_arrays() -> None:
    intent = CategoryIntent().fit(TOKENS, LABELS)
    restored = CategoryIntent.from_arrays(intent.arrays())
    assert np.allclose(restored.predict(["smart", "tv"]), intent.predict(["smart", "tv"]))
    assert restored.labels_ == intent.labels_


def test_the_match_of_some_items_is_their_entries_of_every_items_match() -> None:
    rng = np.random.default_rng(3)
    names = [f"label{i}" for i in range(12)]
    labels = [list(rng.choice(names, size=int(rng.integers(1, 5)), replace=False)) for _ in range(300)]
    tokens = [[f"word{int(w)}" for w in rng.integers(0, 40, size=4)] for _ in range(300)]
    intent = CategoryIntent().fit(tokens, labels)
    p = intent.predict(["word3", "word17"])
    every = intent.item_match(p)
    items = np.array([299, 0, 17, 17, 150, 3], dtype=np.int64)  # any order, repeats allowed
    some = intent.item_match(p, items)
    assert some.dtype == np.float32
    assert np.array_equal(some.view(np.int32), every[items].view(np.int32))  # bit for bit
    assert len(intent.item_match(p, np.zeros(0, dtype=np.int64))) == 0
