"""Title-match features on titles with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from shopfusion.search.titles import TitleIndex, generative_likelihood

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


def test_typed_words_give_the_query_likelihood_of_a_title_holding_it() -> None:
    titles = [
        ["nivea", "soft", "cream", "8", "ounce"],
        ["nivea", "soft", "cream", "12", "ounce"],
        ["nivea", "soft", "moisturizing", "cream", "jar"],
        ["nivea", "lip", "balm"],
    ]
    typed = [["nivea", "soft", "cream"], ["nivea", "soft", "cream"], titles[2], titles[3]]
    length, share, likelihood, *_ = TitleIndex(titles, typed).typed_match(["nivea", "cream"], ROWS)
    assert length.tolist() == [3, 3, 5, 3]
    assert np.allclose(share, [2 / 3, 2 / 3, 2 / 5, 1 / 3])
    # two words drawn from three typed words: 1 / C(3, 2); from five: 1 / C(5, 2)
    assert np.allclose(likelihood[:3], [-np.log(3), -np.log(3), -np.log(10)])
    assert np.isnan(likelihood[3]), "a title without every query word has no subset likelihood"
    assert likelihood[0] == likelihood[1] > likelihood[2], "size variants tie, a wordier title loses"


def test_typed_match_without_typed_words_counts_every_title_word_and_ignores_unknown_words() -> None:
    length, share, likelihood, generative, gap = TitleIndex(TITLES).typed_match(["lip", "zzz"], ROWS)
    assert length.tolist() == [4, 3, 0, 2]  # distinct words: "lip lip balm" has two
    assert np.allclose(share, [1 / 4, 1 / 3, 0, 1 / 2]) and np.isnan(likelihood).all()
    assert np.isnan(generative).all() and np.isnan(gap).all()
    empty = TitleIndex(TITLES).typed_match([], ROWS)
    assert not empty[1].any() and np.isnan(empty[2]).all() and np.isnan(empty[3]).all()


def test_the_generative_likelihood_is_the_typing_process_probability_of_the_query() -> None:
    # Four typed words, two typed: size 2 has probability 1/4 (sizes 2, 3, 3, 4); "a b" is one of
    # three runs and one of six ordered pairs, "a c" no run and one of six pairs.
    assert np.exp(generative_likelihood(["a", "b", "c", "d"], ["a", "b"])) == pytest.approx(
        0.25 * (0.5 / 3 + 0.5 / 6)
    )
    assert np.exp(generative_likelihood(["a", "b", "c", "d"], ["a", "c"])) == pytest.approx(0.25 * 0.5 / 6)
    # A three-word title gives three words three times in four (size 4 is cut to 3), as a run or a pair.
    assert np.exp(generative_likelihood(["a", "b", "c"], ["a", "b", "c"])) == pytest.approx(0.75)
    # Repeated title words: "lip lip balm" spells "lip balm" as two ordered pairs of three.
    assert np.exp(generative_likelihood(["lip", "lip", "balm"], ["lip", "balm"])) == pytest.approx(
        0.25 * (0.5 * 1 / 2 + 0.5 * 2 / 3)
    )
    assert np.isnan(generative_likelihood(["a", "b", "c"], ["b", "a"])), "out of title order"
    assert np.isnan(generative_likelihood(["a", "b"], ["a", "b", "c"])), "more words than the title types"
    assert np.isnan(generative_likelihood(["a", "b", "c", "d", "e"], ["a"])), "one word is never typed"


def test_generative_features_prefer_the_title_that_holds_the_query_as_a_run() -> None:
    titles = [
        ["olay", "regenerist", "micro", "sculpt", "cream"],
        ["olay", "total", "effect", "regenerist", "cream"],
        ["olay", "regenerist", "serum"],
        ["olay", "cream"],
    ]
    *_, generative, gap = TitleIndex(titles).typed_match(["olay", "regenerist"], ROWS)
    assert generative[0] > generative[1], "a run beats the same words scattered in as long a title"
    assert generative[2] > generative[0], "a shorter title is the likelier source of the same run"
    assert np.isnan(generative[3]) and np.isnan(gap[3])
    assert np.nanmax(gap) == 0.0 and np.allclose(gap[:3], generative[:3] - generative[2])


def test_counts_from_the_query_words_postings_equal_the_candidates_rows_bit_for_bit() -> None:
    """A query's counts and rarity-weighted sums come from its words' postings: the same float32
    numbers, summed in the same order, as the candidates' rows times the query's word vector."""
    rng = np.random.default_rng(3)
    vocabulary = [f"w{i}" for i in range(40)]
    titles = [list(rng.choice(vocabulary, size=int(rng.integers(0, 12)))) for _ in range(300)]
    index = TitleIndex(titles, [t[: len(t) // 2] for t in titles])
    for _ in range(50):
        known = sorted({index.vocab[w] for w in rng.choice(vocabulary, size=int(rng.integers(1, 6)))})
        rows = rng.integers(0, len(titles), size=int(rng.integers(1, 80)))  # unsorted, repeats
        wanted = np.zeros(index.words.shape[1], dtype=np.float32)
        wanted[known] = 1.0
        shuffled = list(rng.permutation(known))
        np.testing.assert_array_equal(index._held(index.by_word, shuffled, rows), index.words[rows] @ wanted)
        np.testing.assert_array_equal(
            index._held(index.by_typed_word, shuffled, rows), index.typed[rows] @ wanted
        )
        weighted = index._held_weight(shuffled, rows)
        assert weighted.dtype == np.float32
        np.testing.assert_array_equal(weighted, index.words[rows] @ (wanted * index.idf))
