"""Query understanding: normalisation, language-aware tokens, character n-grams and spelling correction.

The same functions tokenise catalog text at indexing time and queries at search time, so a word is
spelled the same way on both sides. Chinese runs are segmented with jieba (loaded once, lazily);
everything else is split on non-word characters. A light suffix rule folds English plurals
("lotions" -> "lotion") because shoppers type both.
"""

from __future__ import annotations

import html
import logging
import re
import threading
import unicodedata
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from itertools import pairwise
from typing import Any

from shopfusion.encoders.text import require

#: Length of the character n-grams of the typo-tolerant field.
NGRAM = 3

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")
_WORD = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+|[^\W_]+(?:[-'][^\W_]+)*")
_jieba: Any = None
_jieba_lock = threading.Lock()


def normalise(text: str) -> str:
    """NFKC (full-width letters and digits become ASCII), case-folded, HTML entities decoded
    (catalog titles often carry ``&quot;`` or ``&reg;``, which must not become words),
    punctuation turned into spaces, runs of spaces collapsed.

    >>> normalise("  ＳＡＭＳＵＮＧ  QLED-TV, 55\\"!  ")
    'samsung qled-tv 55'
    """
    text = unicodedata.normalize("NFKC", html.unescape(text)).casefold()
    return " ".join(_WORD.findall(text))


def _segmenter() -> Any:
    global _jieba
    with _jieba_lock:
        if _jieba is None:
            with warnings.catch_warnings():
                # jieba 0.42 imports pkg_resources and has regexes that warn on recent Pythons.
                warnings.simplefilter("ignore")
                module = require("jieba", "jieba==0.42.1", extra="search")
            module.setLogLevel(logging.WARNING)
            tokenizer = module.Tokenizer()
            tokenizer.initialize()
            _jieba = tokenizer
        return _jieba


def stem(word: str) -> str:
    """Fold the commonest English plural forms; other words (and CJK) pass unchanged."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    """Normalised, stemmed word tokens; Chinese runs segmented into words.

    >>> tokenize("Samsung 电视 Lotions")
    ['samsung', '电视', 'lotion']
    """
    tokens: list[str] = []
    for word in _WORD.findall(normalise(text)):
        if _CJK.fullmatch(word):
            tokens.extend(w for w in _segmenter().lcut(word) if w.strip())
        else:
            tokens.append(stem(word))
    return tokens


def char_ngrams(tokens: Iterable[str], n: int = NGRAM) -> list[str]:
    """Character n-grams of each token padded with spaces (``" ab"``, ``"abc"``...); tokens shorter
    than ``n - 1`` stay whole. Two spellings one typo apart share most of their n-grams."""
    grams: list[str] = []
    for token in tokens:
        padded = f" {token} "
        if len(padded) <= n:
            grams.append(padded)
        else:
            grams.extend(padded[i : i + n] for i in range(len(padded) - n + 1))
    return grams


def word_bigrams(tokens: Sequence[str]) -> list[str]:
    """Adjacent token pairs, ``["red", "lip", "gloss"] -> ["red lip", "lip gloss"]``."""
    return [f"{a} {b}" for a, b in pairwise(tokens)]


def has_cjk(text: str) -> bool:
    return _CJK.search(text) is not None


class SpellCorrector:
    """Replaces a query word missing from the catalog vocabulary with a catalog word one edit away
    (delete, insert, substitute or transpose), found through a delete index (SymSpell's idea): a
    lookup costs a handful of dict probes, not a scan of the vocabulary. Among several such words
    the one that fits the query's other words best wins (``fit`` of :meth:`correct`: "dean swet
    almond" is "sweet", found with "dean" and "almond", not the commoner "set"), then the most
    frequent. Words of ``min_length`` letters or more are corrected: three, so that "skn" (a
    four-letter word with a letter dropped) is "skin" (on queries with a typo each, the engine's
    validation MRR@10 rose .826 -> .834; benchmarks/RESULTS.md, session 5)."""

    def __init__(self, min_length: int = 3) -> None:
        self.min_length = min_length

    def fit(self, documents: Iterable[Sequence[str]]) -> SpellCorrector:
        counts: Counter[str] = Counter()
        for tokens in documents:
            counts.update(tokens)
        self.frequency_ = dict(counts)
        self._index()
        return self

    def _index(self) -> None:
        self.deletes_: dict[str, list[str]] = {}
        # Most frequent first, so that each delete key lists its source words by frequency.
        for word, _ in sorted(self.frequency_.items(), key=lambda kv: (-kv[1], kv[0])):
            if len(word) < self.min_length - 1 or has_cjk(word):
                continue
            for key in dict.fromkeys((word, *_deletes(word))):
                self.deletes_.setdefault(key, []).append(word)

    def candidates(self, word: str) -> list[str]:
        """The catalog words that ``word`` may be a typo of, most frequent first; empty for a
        catalog word, a number, a Chinese word or a word too short to correct safely."""
        if word in self.frequency_ or len(word) < self.min_length or has_cjk(word) or word.isdigit():
            return []
        found = dict.fromkeys(c for key in (word, *_deletes(word)) for c in self.deletes_.get(key, ()))
        return sorted(found, key=lambda c: -self.frequency_[c])

    def correct_word(self, word: str) -> str:
        options = self.candidates(word)
        return options[0] if options else word

    def correct(
        self, tokens: Sequence[str], fit: Callable[[str, list[str]], float] | None = None
    ) -> list[str]:
        """Each word corrected; ``fit(candidate, other_words)``: how well a candidate goes with the
        query's other catalog words (e.g. how many of them one title holds with it)."""
        out = []
        for i, token in enumerate(tokens):
            options = self.candidates(token)
            if len(options) > 1 and fit is not None:
                context = [w for j, w in enumerate(tokens) if j != i and w in self.frequency_]
                # max keeps the first of equal fits: the most frequent
                options = [max(options, key=lambda c: fit(c, context))] if context else options
            out.append(options[0] if options else token)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"min_length": self.min_length, "frequency": self.frequency_}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SpellCorrector:
        corrector = cls(int(data["min_length"]))
        corrector.frequency_ = {str(k): int(v) for k, v in data["frequency"].items()}
        corrector._index()
        return corrector


def _deletes(word: str) -> list[str]:
    return [word[:i] + word[i + 1 :] for i in range(len(word))]
