"""How a candidate's title holds the query: the title-match features of the search ranker.

Everything that depends only on the catalog (each title's words, joined with spaces for substring
tests, its distinct words as a sparse row) is prepared once, so a query's features over a few
hundred candidates are a sparse product and one substring test per candidate, not a Python loop
over sets.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


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
        self.length = np.array([len(t) for t in self.tokens], dtype=np.float32)
        self.joined = [f" {' '.join(t)} " for t in self.tokens]

    def match(self, query: Sequence[str], rows: IntArray) -> list[FloatArray]:
        """Per row: the query as a contiguous phrase of the title, as its first words, the share
        of the title's distinct words the query names, and the title's length in words."""
        length = self.length[rows]
        phrase = np.zeros(len(rows), dtype=np.float32)
        prefix = np.zeros(len(rows), dtype=np.float32)
        share = np.zeros(len(rows), dtype=np.float32)
        known = [self.vocab[w] for w in dict.fromkeys(query) if w in self.vocab]
        if not query or not known or not len(rows):
            return [phrase, prefix, share, length]
        wanted = np.zeros(self.words.shape[1], dtype=np.float32)
        wanted[known] = 1.0
        named = np.asarray(self.words[rows] @ wanted, dtype=np.float32).ravel()
        share = np.divide(named, self.distinct[rows], out=share, where=self.distinct[rows] > 0)
        # A phrase needs every query word in the title: test only those rows.
        text = f" {' '.join(query)} "
        every = np.flatnonzero(named >= len(known)) if len(known) == len(set(query)) else np.zeros(0, int)
        for j in every:
            joined = self.joined[int(rows[j])]
            phrase[j] = text in joined
            prefix[j] = joined.startswith(text)
        return [phrase, prefix, share.astype(np.float32), length]
