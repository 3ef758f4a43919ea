"""Pseudonym vault: consistent placeholders, exact restore, and placeholders split across streamed chunks."""

from __future__ import annotations

import pytest

from slmkit.guards import PIIVault


def test_same_value_same_placeholder_and_numbering_per_type():
    vault = PIIVault()
    assert vault.placeholder("PERSON", "Ada Lovelace") == "<PERSON_1>"
    assert vault.placeholder("PERSON", "Alan Turing") == "<PERSON_2>"
    assert vault.placeholder("PERSON", "Ada Lovelace") == "<PERSON_1>"
    assert vault.placeholder("PHONE_NUMBER", "555-0100") == "<PHONE_NUMBER_1>"
    assert len(vault) == 3


def test_restore_is_exact_and_leaves_unknown_placeholders():
    vault = PIIVault()
    vault.placeholder("EMAIL_ADDRESS", "ada@example.org")
    text = "Mail <EMAIL_ADDRESS_1>, not <EMAIL_ADDRESS_2> or a < b."
    assert vault.restore(text) == "Mail ada@example.org, not <EMAIL_ADDRESS_2> or a < b."


def test_round_trip_through_dict():
    vault = PIIVault()
    vault.placeholder("PERSON", "Ada")
    copy = PIIVault.from_dict(vault.to_dict())
    assert copy.placeholder("PERSON", "Ada") == "<PERSON_1>"
    assert copy.placeholder("PERSON", "Bob") == "<PERSON_2>"
    with pytest.raises(ValueError):
        PIIVault.from_dict({"PERSON": "Ada"})


ANSWER = "Hello <PERSON_1>, your card <CREDIT_CARD_1> ships to <STREET_ADDRESS_1>. Bye <PERSON_1>!"


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 11, 64])
def test_stream_restores_placeholders_split_anywhere(size):
    vault = PIIVault()
    vault.placeholder("PERSON", "Ada Lovelace")
    vault.placeholder("CREDIT_CARD", "4111 1111 1111 1111")
    vault.placeholder("STREET_ADDRESS", "12 Main Street")
    restorer = vault.restorer()
    out = [restorer.feed(ANSWER[i : i + size]) for i in range(0, len(ANSWER), size)]
    out.append(restorer.flush())
    assert "".join(out) == vault.restore(ANSWER)
    assert all("<" not in piece for piece in out)


def test_stream_does_not_hold_back_ordinary_text():
    restorer = PIIVault().restorer()
    assert restorer.feed("a < b and ") == "a < b and "
    assert restorer.feed("x <") == "x "
    assert restorer.feed("3 apples") == "<3 apples"


@pytest.mark.parametrize("written", ["[PERSON_1]", "(PERSON_1)", "{PERSON_1}", "[ PERSON_1 ]", "<PERSON_1>"])
def test_restore_accepts_the_brackets_a_model_writes_back(written):
    vault = PIIVault()
    vault.placeholder("PERSON", "Ada Lovelace")
    assert vault.restore(f"Dear {written}, hello.") == "Dear Ada Lovelace, hello."
    assert vault.restore("Dear [PERSON_2] and [NOTE_1].") == "Dear [PERSON_2] and [NOTE_1]."


def test_stream_restores_square_brackets_split_across_chunks():
    vault = PIIVault()
    vault.placeholder("PERSON", "Ada Lovelace")
    restorer = vault.restorer()
    out = [restorer.feed(c) for c in ["Dear [PER", "SON_1], see (a", ") and [x]"]]
    out.append(restorer.flush())
    assert "".join(out) == "Dear Ada Lovelace, see (a) and [x]"
