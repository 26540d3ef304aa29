"""Query understanding: normalisation, Chinese segmentation, typo tolerance."""

from __future__ import annotations

from shopfusion.search.query import SpellCorrector, char_ngrams, normalise, stem, tokenize, word_bigrams
from shopfusion.search.titles import TitleIndex


def test_normalise_folds_width_case_and_punctuation() -> None:
    assert normalise('  ＳＡＭＳＵＮＧ  QLED-TV, 55"!  ') == "samsung qled-tv 55"
    assert normalise("Crème &amp; Gel…") == "crème gel"
    assert normalise("&quot;Touch Me&quot;&reg; Brush") == "touch me brush"  # no "quot" or "reg" words
    assert normalise("") == ""


def test_chinese_is_segmented_into_words_and_mixed_text_kept() -> None:
    assert tokenize("三星电视") == ["三星", "电视"]
    assert tokenize("Samsung 电视 Lotions") == ["samsung", "电视", "lotion"]
    assert tokenize("华为手机，５Ｇ") == ["华为", "手机", "5g"]


def test_plurals_fold_but_short_and_latin_endings_stay() -> None:
    assert [stem(w) for w in ("brushes", "cherries", "gloss", "bus", "lips", "iris")] == [
        "brushe",
        "cherry",
        "gloss",
        "bus",
        "lip",
        "iris",
    ]


def test_character_ngrams_overlap_despite_a_typo() -> None:
    right, wrong = set(char_ngrams(["shampoo"])), set(char_ngrams(["shampo"]))
    assert len(right & wrong) >= 4
    assert char_ngrams(["tv", "a"]) == [" tv", "tv ", " a "]


def test_spell_corrector_fixes_one_edit_and_prefers_frequent_words() -> None:
    corrector = SpellCorrector().fit(
        [["samsung", "tv"], ["samsung", "phone"], ["alpha", "hydrox"], ["samsong"]]
    )
    assert corrector.correct(["samsng", "tv"]) == ["samsung", "tv"]  # deletion
    assert corrector.correct(["aplha"]) == ["alpha"]  # transposition
    assert corrector.correct(["phome"]) == ["phone"]  # substitution
    assert corrector.correct(["samsong"]) == ["samsong"]  # known words are never changed
    assert corrector.correct(["zzzzzz", "电视", "1234"]) == ["zzzzzz", "电视", "1234"]
    restored = SpellCorrector.from_json(corrector.to_json())
    assert restored.correct(["samsng"]) == ["samsung"]


def test_word_bigrams_keep_the_title_order() -> None:
    assert word_bigrams(["red", "lip", "gloss"]) == ["red lip", "lip gloss"]
    assert word_bigrams(["one"]) == []


def test_spell_corrector_picks_the_word_that_fits_the_other_query_words() -> None:
    titles = [["chaz", "dean", "sweet", "almond", "mint"]] + [["hair", "clip", "set"]] * 5
    corrector = SpellCorrector().fit(titles)
    assert corrector.candidates("swet") == ["set", "sweet"]  # by frequency
    assert corrector.correct(["dean", "swet"]) == ["dean", "set"], "without a fit: the most frequent"
    index = TitleIndex(titles)
    assert index.together("sweet", ["dean", "almond"]) == 2 and index.together("set", ["dean"]) == 0
    assert corrector.correct(["dean", "swet", "almond"], index.together) == ["dean", "sweet", "almond"]
    assert corrector.correct(["swet", "clip"], index.together) == ["set", "clip"]
    assert corrector.correct(["swet"], index.together) == ["set"], "no other words: the most frequent"


def test_three_letter_typos_are_corrected_but_not_shorter_words() -> None:
    corrector = SpellCorrector().fit([["milk", "skin", "lotion"], ["tv"]])
    assert corrector.correct(["skn", "milk"]) == ["skin", "milk"]  # a four-letter word, a letter dropped
    assert corrector.correct(["tx", "ab"]) == ["tx", "ab"], "two letters are too few to guess from"
    assert SpellCorrector(min_length=4).fit([["skin"]]).correct(["skn"]) == ["skn"]
