"""The official VQA answer normalisation, the EvalAI processor LLaVA adds, and the leave-one-out accuracy."""

import pytest

from deco.eval.normalize import (
    normalize_evalai,
    normalize_vqa,
    process_digit_article,
    process_punctuation,
    vqa_accuracy,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("two", "2"),  # number words become digits
        ("Ten", "10"),
        ("none", "0"),
        ("eleven", "eleven"),  # only zero..ten are mapped
        ("The dog", "dog"),  # articles dropped
        ("an apple", "apple"),
        ("a", ""),
        ("Yes.", "yes"),  # trailing period
        ("3.5", "3.5"),  # decimal point kept
        ("It is 3.5.", "it is 3.5"),
        ("e.g.", "eg"),
        ("dont", "don't"),  # contractions restored
        ("isnt", "isn't"),
        ("Yes!", "yes"),
        ("hot-dog", "hot dog"),  # a mark away from spaces becomes a space
        ("red, blue", "red blue"),  # a mark next to a space is deleted
        ("1,000", "1000"),  # digit,digit: every mark is deleted
        ("  two\tdogs\n", "2 dogs"),
    ],
)
def test_official_normalisation(raw, expected):
    assert normalize_vqa(raw) == expected


def test_punctuation_rule_looks_at_the_original_text():
    # '/' has no space beside it but ',' has: only the ',' is deleted, '/' becomes a space.
    assert process_punctuation("a/b, c") == "a b c"
    # A digit,digit anywhere makes every mark vanish, even away from the digits.
    assert process_punctuation("1,000 a/b") == "1000 ab"


def test_digit_article_maps_numbers_before_dropping_articles():
    assert process_digit_article("The Two Dogs") == "2 dogs"


def test_evalai_processor_differs_from_official_on_commas_and_possessives():
    assert normalize_evalai("red,blue") == "redblue"  # EvalAI deletes commas first
    assert normalize_vqa("red,blue") == "red blue"
    assert normalize_evalai("man's") == "man 's"
    assert normalize_evalai("What?") == "what"


@pytest.mark.parametrize(("matches", "expected"), [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)])
def test_leave_one_out_accuracy_values(matches, expected):
    humans = ["cat"] * matches + ["dog"] * (10 - matches)
    assert vqa_accuracy("cat", humans) == pytest.approx(expected)


def test_leave_one_out_accuracy_matches_brute_force():
    humans = ["a", "a", "b", "c", "a", "b", "d", "e", "f", "g"]
    for pred in ("a", "b", "z"):
        brute = sum(min(1, (humans[:i] + humans[i + 1:]).count(pred) / 3) for i in range(10)) / 10
        assert vqa_accuracy(pred, humans) == pytest.approx(brute)
