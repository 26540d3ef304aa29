"""Training queries for the search ranker, derived from the shop's own data — never from a test set.

Three kinds, each a (query, history, relevant items) triple:

* **known-item**: a few words of an item's title (a contiguous span or an ordered subset), now and
  then with a typo — a shopper looking for one product they know;
* **category**: a category's name (or its translation) — every item of the category is relevant;
* **personal**: a user's held-out last item, queried by one or two of its title's commonest words
  (what shoppers type for a kind of product), with the rest of the user's history as context.

Past searches that ended in a click or purchase are used as they are.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from shopfusion.data.interactions import Histories
from shopfusion.search.query import has_cjk, normalise

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


def known_item_queries(
    titles: Sequence[str], n: int, rng: np.random.Generator, typo_rate: float = 0.2
) -> list[TrainingQuery]:
    items = np.flatnonzero([bool(t.strip()) for t in titles])
    out: list[TrainingQuery] = []
    if not len(items):
        return out
    for item in rng.choice(items, size=n, replace=len(items) < n):
        words = title_words(titles[item])
        if not words:
            continue
        size = min(len(words), int(rng.choice([1, 2, 2, 3, 3, 3, 4, 4, 5])))
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
