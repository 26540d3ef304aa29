"""How a candidate's title holds the query: the title-match features of the search ranker.

Everything that depends only on the catalog (each title's words, joined with spaces for substring
tests, its distinct words as a sparse row) is prepared once, so a query's features over a few
hundred candidates are a sparse product and one substring test per candidate, not a Python loop
over sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


#: The names of :meth:`TitleIndex.match`'s columns (ranker features ``lexical_<name>``).
MATCH_FEATURES = ("phrase", "prefix", "title_share", "title_length", "in_order", "idf_coverage", "span")


class TitleIndex:
    """``TitleIndex(tokens)``: ``tokens[i]``, the tokenised title of item ``i``."""

    def __init__(self, tokens: Sequence[Sequence[str]]) -> None:
        self.tokens = [list(t) for t in tokens]
        self.vocab: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        for item, words in enumerate(self.tokens):
            for word in dict.fromkeys(words):
                rows.append(item)
                cols.append(self.vocab.setdefault(word, len(self.vocab)))
        # items x words, 1 where the title has the word (once, however often it repeats)
        self.words = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, cols)),
            shape=(len(self.tokens), max(len(self.vocab), 1)),
        )
        self.distinct = np.asarray(self.words.sum(axis=1), dtype=np.float32).ravel()
        # A word's rarity among titles; a word no title has counts as rare as the rarest.
        frequency = np.asarray(self.words.sum(axis=0), dtype=np.float32).ravel()
        self.idf = np.log1p(len(self.tokens) / np.maximum(frequency, 1.0)).astype(np.float32)
        self.unknown_idf = float(np.log1p(len(self.tokens)))
        self.length = np.array([len(t) for t in self.tokens], dtype=np.float32)
        self.joined = [f" {' '.join(t)} " for t in self.tokens]

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
        wanted = np.zeros(self.words.shape[1], dtype=np.float32)
        wanted[known] = 1.0
        held = self.words[rows]
        named = np.asarray(held @ wanted, dtype=np.float32).ravel()
        np.divide(named, self.distinct[rows], out=share, where=self.distinct[rows] > 0)
        total = float(self.idf[known].sum()) + self.unknown_idf * (len(distinct) - len(known))
        weighted[:] = np.asarray(held @ (wanted * self.idf), dtype=np.float32).ravel() / total
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
