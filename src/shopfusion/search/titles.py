"""How a candidate's title holds the query: the title-match features of the search ranker.

Everything that depends only on the catalog (each title's words, joined with spaces for substring
tests, its distinct words as a sparse row, and each word's titles) is prepared once, so a query's
features over a few hundred candidates are counts over its words' titles and one substring test
per candidate, not a Python loop over sets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise
from math import comb

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.special import gammaln

from shopfusion.search.training import KNOWN_ITEM_SIZES

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


#: The names of :meth:`TitleIndex.match`'s columns (ranker features ``lexical_<name>``).
MATCH_FEATURES = ("phrase", "prefix", "title_share", "title_length", "in_order", "idf_coverage", "span")
#: The names of :meth:`TitleIndex.typed_match`'s columns (ranker features ``lexical_<name>``).
TYPED_FEATURES = ("typed_length", "typed_share", "subset_likelihood", "generative", "generative_gap")


class TitleIndex:
    """``TitleIndex(tokens, typed)``: ``tokens[i]``, the tokenised title of item ``i``;
    ``typed[i]``, the words of it a shopper types (sizes, units and function words left out, as
    :func:`shopfusion.search.training.typed_words`), tokenised; without ``typed``, every word."""

    def __init__(self, tokens: Sequence[Sequence[str]], typed: Sequence[Sequence[str]] | None = None) -> None:
        self.tokens = [list(t) for t in tokens]
        self.vocab: dict[str, int] = {}
        # items x words, 1 where the title has the word (once, however often it repeats); the typed
        # words share the titles' vocabulary, so one query vector multiplies either matrix
        self.words = self._incidence(self.tokens, grow=True)
        self.typed_tokens = self.tokens if typed is None else [list(t) for t in typed]
        self.typed = self._incidence(self.typed_tokens, grow=False)
        self.typed_length = np.asarray(self.typed.sum(axis=1), dtype=np.float32).ravel()
        self.distinct = np.asarray(self.words.sum(axis=1), dtype=np.float32).ravel()
        # A word's rarity among titles; a word no title has counts as rare as the rarest.
        frequency = np.asarray(self.words.sum(axis=0), dtype=np.float32).ravel()
        self.idf = np.log1p(len(self.tokens) / np.maximum(frequency, 1.0)).astype(np.float32)
        self.unknown_idf = float(np.log1p(len(self.tokens)))
        self.length = np.array([len(t) for t in self.tokens], dtype=np.float32)
        self.joined = [f" {' '.join(t)} " for t in self.tokens]
        # word -> titles holding it: a query's counts come from its words' few postings instead
        # of from the candidates' rows (RESULTS.md, session 15)
        self.by_word = self.words.tocsc()
        self.by_typed_word = self.typed.tocsc()

    def _incidence(self, documents: Sequence[Sequence[str]], grow: bool) -> sp.csr_matrix:
        rows: list[int] = []
        cols: list[int] = []
        for item, words in enumerate(documents):
            for word in dict.fromkeys(words):
                if grow or word in self.vocab:
                    rows.append(item)
                    cols.append(self.vocab.setdefault(word, len(self.vocab)))
        return sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, cols)),
            shape=(len(self.tokens), max(len(self.vocab), 1)),
        )

    def together(self, word: str, others: Sequence[str]) -> float:
        """The most of ``others`` that one title holding ``word`` holds too (0 when no title has
        ``word``): how well a spelling correction fits the rest of the query."""
        j = self.vocab.get(word)
        known = [self.vocab[w] for w in dict.fromkeys(others) if w in self.vocab]
        if j is None or not known:
            return 0.0
        titles = self.by_word.indices[self.by_word.indptr[j] : self.by_word.indptr[j + 1]]
        return float(self.words[titles][:, known].sum(axis=1).max())

    @staticmethod
    def _postings(by_word: sp.csc_matrix, columns: Sequence[int]) -> tuple[IntArray, IntArray]:
        """The titles holding each of ``columns``, one column after another, and how many each."""
        starts, ends = by_word.indptr[columns], by_word.indptr[np.asarray(columns) + 1]
        items = np.concatenate([by_word.indices[a:b] for a, b in zip(starts, ends, strict=True)])
        return items, ends - starts

    def _held(self, by_word: sp.csc_matrix, known: list[int], rows: IntArray) -> FloatArray:
        """How many of the ``known`` words (distinct columns) each of ``rows`` holds."""
        items, _ = self._postings(by_word, known)
        return np.bincount(items, minlength=by_word.shape[0])[rows].astype(np.float32)

    def _held_weight(self, known: list[int], rows: IntArray) -> FloatArray:
        """The sum of the ``known`` words' idf each of ``rows`` holds, in float32 and in column
        order per title, as ``words[rows] @ (wanted * idf)`` sums it (the same numbers)."""
        columns = sorted(known)
        items, counts = self._postings(self.by_word, columns)
        total = np.zeros(self.by_word.shape[0], dtype=np.float32)
        np.add.at(total, items, np.repeat(self.idf[columns], counts))
        return total[rows]

    def typed_match(self, query: Sequence[str], rows: IntArray) -> list[FloatArray]:
        """Per row, in :data:`TYPED_FEATURES` order: how many words of the title a shopper would
        type, the share of them the query names, and, when they hold every query word, the log
        likelihood of the query as ``k`` of those ``n`` words drawn at random, ``-log C(n, k)``
        (NaN otherwise) — among titles that all hold the query, the one with fewer other words to
        pick from is the likelier source: an "8 Ounce" and a "12 Ounce" variant tie, but a title
        with two more product words does not. Then, for those titles, :func:`generative_likelihood`
        of the query (word order and runs counted; NaN otherwise) and its distance to the best of
        the rows (the other rows' likelihoods are what make one title the likelier source)."""
        n = len(rows)
        length = self.typed_length[rows]
        share = np.zeros(n, dtype=np.float32)
        likelihood = np.full(n, np.nan, dtype=np.float32)
        generative = np.full(n, np.nan, dtype=np.float32)
        distinct = list(dict.fromkeys(query))
        known = [self.vocab[w] for w in distinct if w in self.vocab]
        if not known or not n:
            return [length, share, likelihood, generative, generative.copy()]
        held = self._held(self.by_typed_word, known, rows)
        np.divide(held, length, out=share, where=length > 0)
        k = len(distinct)
        full = held >= k
        total = length[full].astype(np.float64)
        likelihood[full] = -(gammaln(total + 1) - gammaln(k + 1) - gammaln(total - k + 1))
        for j in np.flatnonzero(full).tolist():
            generative[j] = generative_likelihood(self.typed_tokens[int(rows[j])], query)
        gap = generative - np.nanmax(generative) if np.isfinite(generative).any() else generative.copy()
        return [length, share, likelihood, generative, gap]

    def match(self, query: Sequence[str], rows: IntArray) -> list[FloatArray]:
        """Per row, in :data:`MATCH_FEATURES` order: the query as a contiguous phrase of the title,
        as its first words, the share of the title's distinct words the query names, the title's
        length in words; whether the title holds every query word in the query's order, the
        rarity-weighted share of the query's words the title holds, and, when it holds them all,
        how tightly (the words' span in the title per query word; NaN otherwise)."""
        n = len(rows)
        phrase, prefix, share, in_order, weighted = (np.zeros(n, dtype=np.float32) for _ in range(5))
        span = np.full(n, np.nan, dtype=np.float32)
        length = self.length[rows]
        distinct = list(dict.fromkeys(query))
        known = [self.vocab[w] for w in distinct if w in self.vocab]
        if not known or not n:
            return [phrase, prefix, share, length, in_order, weighted, span]
        named = self._held(self.by_word, known, rows)
        np.divide(named, self.distinct[rows], out=share, where=self.distinct[rows] > 0)
        total = float(self.idf[known].sum()) + self.unknown_idf * (len(distinct) - len(known))
        weighted[:] = self._held_weight(known, rows) / total
        if len(known) < len(distinct):
            return [phrase, prefix, share, length, in_order, weighted, span]
        # Word order and phrases need every query word in the title: only those rows are read.
        text = f" {' '.join(query)} "
        for j in np.flatnonzero(named >= len(known)).tolist():
            item = int(rows[j])
            joined = self.joined[item]
            phrase[j] = text in joined
            prefix[j] = joined.startswith(text)
            words = self.tokens[item]
            positions = [words.index(w) for w in distinct]
            in_order[j] = all(a < b for a, b in pairwise(positions))
            span[j] = (max(positions) - min(positions) + 1) / len(positions)
        return [phrase, prefix, share, length, in_order, weighted, span]


def generative_likelihood(
    typed: Sequence[str], query: Sequence[str], sizes: Sequence[int] = KNOWN_ITEM_SIZES
) -> float:
    """``log P(query | title)`` for a shopper who types ``k`` of the title's typed words — ``k``
    drawn from ``sizes`` (at most the title's length) — half the time a contiguous run of them,
    half the time any ``k`` of them in title order; NaN when the title cannot give the query.

    Among titles that all hold the query's words, this tells a short title that holds them as a
    run from a long one that holds them scattered: the words a known-item shopper types are
    likelier to have come from the former."""
    n, k = len(typed), len(query)
    # Plain Python on these few numbers: numpy's per-call cost on scalars was most of a call, and
    # the ranker asks for every candidate that holds the query (several per search).
    size = sum(min(n, s) == k for s in sizes) / len(sizes) if n else 0.0
    if size == 0.0 or k == 0:
        return float("nan")
    wanted = list(query)
    runs = sum(list(typed[s : s + k]) == wanted for s in range(n - k + 1))
    # Ordered selections of k positions spelling the query: the classic subsequence count.
    ways = [1] + [0] * k
    for word in typed:
        for j in range(k, 0, -1):
            if wanted[j - 1] == word:
                ways[j] += ways[j - 1]
    p = size * (0.5 * runs / (n - k + 1) + 0.5 * ways[k] / comb(n, k))
    return math.log(p) if p > 0 else float("nan")
