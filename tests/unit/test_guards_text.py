"""Text helpers of the grounding guard, and the checksums the PII recognizers rely on."""

from __future__ import annotations

import pytest

from slmkit.guards.recognizers import iban_valid, luhn_valid
from slmkit.guards.text import citations, content_words, numbers, split_sentences, stem


def test_sentences_keep_offsets_and_skip_abbreviations():
    text = "Dr. Smith met Mr. Jones in 2020. They talked! Then left.\n\n- a list item"
    sentences = split_sentences(text)
    assert [s.text for s in sentences] == [
        "Dr. Smith met Mr. Jones in 2020.",
        "They talked!",
        "Then left.",
        "- a list item",
    ]
    assert all(text[s.start : s.end] == s.text for s in sentences)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,200 people", ["1200"]),
        ("rated 4.0 stars", ["4"]),
        ("five died", ["5"]),
        ("open 5PM to 9:30 p.m.", ["17:0", "21:30"]),
        ("from 17:00", ["17:0"]),
        ("at 7:30:15", ["7:30"]),
        ("a ratio of 1:4,000,000 or 2.0:1", ["1:4000000", "2:1"]),  # not a time; used to raise ValueError
    ],
)
def test_numbers_are_normalised(text, expected):
    assert numbers(text) == expected


@pytest.mark.parametrize(
    "forms",
    [
        ("outcome", "outcomes", "Outcome"),
        ("increase", "increased", "increases", "increasing"),
        ("study", "studies", "studied"),
        ("close", "closed", "closes"),
    ],
)
def test_stem_matches_inflections(forms):
    assert len({stem(w) for w in forms}) == 1


def test_content_words_keep_different_words_apart():
    assert content_words("The partner improves outcomes of the partnership") == [
        "partner",
        "improv",
        "outcom",
        "partnership",
    ]


def test_citation_markers():
    assert citations("It rains [1][2, 3] and snows [doc-7] [source: a.pdf#p3].") == ["1", "2", "3", "doc-7", "a.pdf#p3"]


@pytest.mark.parametrize(
    ("number", "valid"),
    [("4111 1111 1111 1111", True), ("4111 1111 1111 1112", False), ("5500-0000-0000-0004", True), ("1234", False)],
)
def test_luhn(number, valid):
    assert luhn_valid(number) is valid


@pytest.mark.parametrize(
    ("iban", "valid"),
    [("GB82 WEST 1234 5698 7654 32", True), ("GB82 WEST 1234 5698 7654 33", False), ("DE89370400440532013000", True)],
)
def test_iban(iban, valid):
    assert iban_valid(iban) is valid
