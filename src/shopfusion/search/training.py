"""Training queries for the search ranker, derived from the shop's own data — never from a test set.

Three kinds, each a (query, history, relevant items) triple:

* **known-item**: two to four words of an item's title (a contiguous span or an ordered subset;
  sizes, units and function words left out), now and then with a typo — a shopper looking for one
  product they know;
* **category**: a category's name (or its translation) — every item of the category is relevant;
* **personal**: a user's held-out last item, queried by one or two of its title's commonest words
  (what shoppers type for a kind of product), with the rest of the user's history as context.

Past searches that ended in a click or purchase are used as they are.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from shopfusion.data.interactions import Histories
from shopfusion.search.query import has_cjk, normalise, stem

IntArray = npt.NDArray[np.int64]
_EMPTY = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class TrainingQuery:
    query: str
    positives: IntArray
    history: IntArray = field(default_factory=lambda: _EMPTY)
    kind: str = "known-item"


def title_words(title: str) -> list[str]:
    """Words a shopper could type from a title (Chinese runs kept whole: they are typed as seen)."""
    return normalise(title).split()


def typo(word: str, rng: np.random.Generator) -> str:
    """One random edit: drop, double, swap or replace a character (never the first)."""
    if len(word) < 4 or has_cjk(word):
        return word
    i = int(rng.integers(1, len(word) - 1))
    kind = int(rng.integers(0, 4))
    if kind == 0:
        return word[:i] + word[i + 1 :]
    if kind == 1:
        return word[:i] + word[i] + word[i:]
    if kind == 2:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return word[:i] + chr(ord("a") + int(rng.integers(0, 26))) + word[i + 1 :]


#: How many words a shopper types for a product they know: two to four, three most often (one
#: word names a kind of product — the category and personal queries — rather than one item).
KNOWN_ITEM_SIZES = (2, 3, 3, 4)


#: Units of a size or quantity ("8 oz", "250ml", "6.7-ounce", "25 count").
UNITS = frozenset(
    ("oz", "fl", "fluid", "ounce", "ml", "g", "gram", "lb", "kg", "count", "ct", "pack", "piece", "inch")
)
#: Words a shopper leaves out of a query for a product they know: function words and units.
UNTYPED = UNITS | {"a", "an", "and", "the", "of", "for", "by", "with", "in", "on", "to", "or", "from", "size"}


def typed_words(title: str) -> list[str]:
    """The title's words a shopper types for it: sizes and quantities ("1.7 oz", "250ml"),
    function words and units are left out, unless the title has nothing else. Other numbers stay:
    model numbers and shade numbers are typed ("galaxy s10", "essie 50")."""
    words = title_words(title)
    quantity = [False] * (len(words) + 1)
    for i in reversed(range(len(words))):  # "6.7-ounce" is "6", "7-ounce": a quantity spreads left
        if any(c.isdigit() for c in words[i]):
            unit = stem(words[i].lstrip("0123456789.-")) in UNITS
            quantity[i] = unit or quantity[i + 1] or (i + 1 < len(words) and stem(words[i + 1]) in UNITS)
    kept = [w for w, q in zip(words, quantity, strict=False) if not q and stem(w) not in UNTYPED]
    return kept or words


def known_item_queries(
    titles: Sequence[str],
    n: int,
    rng: np.random.Generator,
    typo_rate: float = 0.2,
    sizes: Sequence[int] = KNOWN_ITEM_SIZES,
    demand: npt.NDArray[np.floating[Any]] | None = None,
) -> list[TrainingQuery]:
    """``n`` items drawn, each queried by ``sizes``-many of its title's typed words, a contiguous
    span or words in title order, one of them now and then with a typo.

    ``demand`` (per item, e.g. interaction counts): half the items are drawn in proportion to it —
    shoppers look for the products people buy, the engine's ``P(a|S)`` — and half uniformly, so
    that the catalog's long tail stays findable; without it, all uniformly."""
    has_title = np.array([bool(t.strip()) for t in titles], dtype=bool)
    items = np.flatnonzero(has_title)
    out: list[TrainingQuery] = []
    if not len(items):
        return out
    p = np.full(len(items), 1.0 / len(items))
    if demand is not None and float(demand[items].sum()) > 0:
        p = 0.5 * p + 0.5 * demand[items] / float(demand[items].sum())
    for item in rng.choice(items, size=n, replace=len(items) < n, p=p):
        words = typed_words(titles[item])
        if not words:
            continue
        size = min(len(words), int(rng.choice(sizes)))
        if rng.random() < 0.5:
            start = int(rng.integers(0, len(words) - size + 1))
            chosen = words[start : start + size]
        else:
            chosen = [words[i] for i in np.sort(rng.choice(len(words), size=size, replace=False))]
        if rng.random() < typo_rate:
            j = int(rng.integers(0, len(chosen)))
            chosen[j] = typo(chosen[j], rng)
        out.append(TrainingQuery(" ".join(chosen), np.array([item], dtype=np.int64)))
    return out


def category_queries(names: Sequence[Sequence[str]], n: int, rng: np.random.Generator) -> list[TrainingQuery]:
    """``names[i]``: the category names of item ``i`` (path leaf, translations); one query per
    name drawn, every item sharing that name relevant."""
    members: dict[str, list[int]] = {}
    for item, item_names in enumerate(names):
        for name in item_names:
            if name.strip():
                members.setdefault(name, []).append(item)
    if not members:
        return []
    keys = sorted(members)
    picks = rng.choice(len(keys), size=min(n, 4 * len(keys)), replace=True)
    return [
        TrainingQuery(keys[p], np.asarray(members[keys[p]], dtype=np.int64), kind="category") for p in picks
    ]


def personal_queries(
    titles: Sequence[str], histories: Histories, n: int, rng: np.random.Generator
) -> list[TrainingQuery]:
    """Each drawn user's last item is the target, the items before it the history; the query is
    one or two of the target title's words, drawn by how many titles use them."""
    document_frequency: Counter[str] = Counter()
    for title in titles:
        document_frequency.update(set(title_words(title)))
    lengths = histories.lengths()
    users = np.flatnonzero(lengths >= 2)
    out: list[TrainingQuery] = []
    if not len(users):
        return out
    for user in rng.choice(users, size=min(n, len(users)), replace=False):
        row = histories.row(int(user))
        target = int(row[-1])
        words = [w for w in title_words(titles[target]) if not w.isdigit()]
        if not words:
            continue
        weights = np.array([document_frequency[w] for w in words], dtype=np.float64)
        size = min(len(words), 1 if rng.random() < 0.6 else 2)
        chosen = rng.choice(len(words), size=size, replace=False, p=weights / weights.sum())
        query = " ".join(words[i] for i in np.sort(chosen))
        out.append(TrainingQuery(query, np.array([target], dtype=np.int64), row[:-1].copy(), "personal"))
    return out
