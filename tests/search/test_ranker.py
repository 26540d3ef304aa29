"""The learned ranker picks up what the data teaches: here, that a shopper's history decides
between products the query cannot tell apart."""

from __future__ import annotations

import numpy as np
import pandas as pd

from shopfusion.data.interactions import Histories
from shopfusion.search.engine import SearchConfig, SearchEngine

SHADES = ("ruby", "coral", "nude", "plum", "rose", "berry", "wine", "peach", "mauve", "cherry")


def test_history_decides_among_lexically_equal_products() -> None:
    rng = np.random.default_rng(0)
    # Items 0-9 and 10-19 are lipsticks of the same shades from two lines; 20-29 are mascaras.
    titles = [f"{s} lipstick" for s in SHADES] * 2 + [f"{s} mascara" for s in SHADES]
    catalog = pd.DataFrame({"item_id": [str(i) for i in range(30)], "title": titles})
    # Each shopper sticks to one product line: the co-purchase signal separates the two lines.
    rows = []
    for user in range(300):
        line = user % 3
        rows.append([int(i) for i in rng.choice(10, size=int(rng.integers(3, 7)), replace=False) + 10 * line])
    histories = Histories.from_lists(rows, 30)
    engine = SearchEngine(SearchConfig(encoders=("use-multilingual",), personal_queries=300)).fit(
        catalog, histories
    )
    assert engine.ranker_ is not None and engine.training_["queries_personal"] >= 60
    for history, own_line in (([0, 1, 2], range(10)), ([12, 13, 14], range(10, 20))):
        result = engine.search("lipstick", k=5, history=np.array(history), exclude_history=True)
        assert set(result.items.tolist()) <= set(own_line), (history, result.items)
        assert all(r["personal"] > 0 for r in result.explanations)
    anonymous = engine.search("lipstick", k=20)
    assert set(anonymous.items.tolist()) == set(range(20))
