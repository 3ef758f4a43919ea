"""PIIGuard on the real Presidio + spaCy model (en_core_web_md when installed, else the small one), offline:
detection per entity, actions, round trip."""

from __future__ import annotations

import re
from typing import ClassVar

import pytest
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from slmkit.core.errors import GuardBlockedError
from slmkit.guards import Guarded, PIIGuard, PIIVault


@pytest.fixture(scope="module")
def guard() -> PIIGuard:
    return PIIGuard()


def found(guard: PIIGuard, text: str) -> set[tuple[str, str]]:
    return {(f.entity_type, text[f.start : f.end]) for f in guard.detect(text)}


# (text, entity type, value that must be found) -- one row per entity, from Presidio's and our recognizers.
POSITIVES = [
    ("Please call John Smith tomorrow.", "PERSON", "John Smith"),
    ("For my take on Mrs. Karataev, see the blog.", "PERSON", "Karataev"),
    ("For my take on Mrs. Karataev, see the blog.", "TITLE", "Mrs."),
    ("Write to ada.lovelace@example.org today.", "EMAIL_ADDRESS", "ada.lovelace@example.org"),
    ("Contact dana.whitfield@lumengrid.example for leave.", "EMAIL_ADDRESS", "dana.whitfield@lumengrid.example"),
    ("I'm 28 and I live in Leeds.", "AGE", "28"),
    ("My card 4111 1111 1111 1111 was charged twice.", "CREDIT_CARD", "4111 1111 1111 1111"),
    ("My IBAN is GB82WEST12345698765432", "IBAN_CODE", "GB82WEST12345698765432"),
    ("Here's my SSN: 494-33-0748", "US_SSN", "494-33-0748"),
    ("They're not answering at 780-999-2181", "PHONE_NUMBER", "780-999-2181"),
    ("keep getting address 36.160.14.148 blocked", "IP_ADDRESS", "36.160.14.148"),
    ("My website is https://www.example-shop.com/", "URL", "https://www.example-shop.com/"),
    ("She was born on 11/22/2000.", "DATE_TIME", "11/22/2000"),
    ("My father retired at the age of 72", "AGE", "72"),
    ("This 79 year old female complained of pain.", "AGE", "79"),
    ("The zip code is 94105-1234", "ZIP_CODE", "94105-1234"),
    ("I live at 1600 Pennsylvania Avenue, Washington", "STREET_ADDRESS", "1600 Pennsylvania Avenue, Washington"),
    ("Send it to Augsburger Strasse 36, please.", "STREET_ADDRESS", "Augsburger Strasse 36"),
    ("Megan lives on Via Tasso 129 street.", "STREET_ADDRESS", "Via Tasso 129"),
    ("What is your address? it is PSC 0272, Box 1651", "STREET_ADDRESS", "PSC 0272, Box 1651"),
    # issue 16: formats Presidio's recognizers miss, and whole address blocks
    ("Mobile: 432 03 163", "PHONE_NUMBER", "432 03 163"),
    ("Desk: +1-903-140-4508x769", "PHONE_NUMBER", "+1-903-140-4508x769"),
    ("28-64-66-98 office\n+447700677662 mobile", "PHONE_NUMBER", "+447700677662"),
    ("card number 2395286334599325 is lost", "CREDIT_CARD", "2395286334599325"),
    ("Date: 2012-10-01 00:46:43", "DATE_TIME", "2012-10-01 00:46:43"),
    (
        "Angelo Rizzo\n\n50345 Wingertweg 126\n Suite 408\n Ependes\n\n Switzerland 82590",
        "STREET_ADDRESS",
        "50345 Wingertweg 126\n Suite 408\n Ependes\n\n Switzerland 82590",
    ),
    (
        "send a new one to the corner of Kuusiku 7 and Alexander Flat?",
        "STREET_ADDRESS",
        "the corner of Kuusiku 7 and Alexander Flat",
    ),
]


@pytest.mark.parametrize(("text", "entity", "value"), POSITIVES, ids=[f"{r[1]}-{i}" for i, r in enumerate(POSITIVES)])
def test_positive(guard, text, entity, value):
    assert (entity, value) in found(guard, text)


# (text, entity type that must NOT be reported)
NEGATIVES = [
    ("My card 4111 1111 1111 1112 was charged twice.", "CREDIT_CARD"),  # fails Luhn
    ("My IBAN is GB82WEST12345698765433", "IBAN_CODE"),  # fails mod-97
    ("We meet next week on Thursday.", "DATE_TIME"),  # not a concrete date
    ("Call me at 212-555-0199.", "UK_NHS"),  # a phone number, no NHS context
    ("The meeting has 12 items and 3 votes.", "AGE"),
    ("What is 28 times 8?", "AGE"),
    ("The answer is 12 + 30.", "AGE"),
    ("Write to someone@nowhere.notatld today.", "EMAIL_ADDRESS"),
    ("The weather is nice and the river is wide.", "PERSON"),
    ("I bought 3 apples for 2 dollars.", "STREET_ADDRESS"),
    ("Version 2.1 was released in the spring.", "IP_ADDRESS"),
]


@pytest.mark.parametrize(("text", "entity"), NEGATIVES, ids=[f"{r[1]}-{i}" for i, r in enumerate(NEGATIVES)])
def test_negative(guard, text, entity):
    assert entity not in {t for t, _ in found(guard, text)}


def test_default_model_is_the_medium_one_when_installed(guard):
    from slmkit.guards.presidio_engine import DEFAULT_SPACY_MODEL, medium_model_available

    assert guard.spacy_model == ("en_core_web_md" if medium_model_available() else DEFAULT_SPACY_MODEL)


def test_allow_and_deny_lists():
    guard = PIIGuard(allow_list=["John Smith"], deny_list={"PROJECT": ["Falcon"]})
    text = "John Smith leads project Falcon."
    assert found(guard, text) == {("PROJECT", "Falcon")}


def test_thresholds_per_entity():
    text = "Please call John Smith tomorrow."
    assert not PIIGuard(thresholds={"PERSON": 0.99}).detect(text)


@pytest.mark.parametrize(
    ("action", "check"),
    [
        ("redact", lambda out: out == "Card [CREDIT_CARD] on file."),
        ("mask", lambda out: out == "Card ******************* on file."),
        ("hash", lambda out: re.fullmatch(r"Card [0-9a-f]{64} on file\.", out) is not None),
        ("pseudonymize", lambda out: out == "Card <CREDIT_CARD_1> on file."),
        ("keep", lambda out: out == "Card 4111 1111 1111 1111 on file."),
    ],
)
def test_actions(action, check):
    guard = PIIGuard(action=action, hash_salt="a-salt-of-16-chars!")
    assert check(guard.anonymize("Card 4111 1111 1111 1111 on file.", vault=PIIVault()))


def test_mask_keeps_last_digits_and_hash_is_stable_with_salt():
    text = "Card 4111 1111 1111 1111 on file."
    assert PIIGuard(action="mask", mask_keep_last=4).anonymize(text) == "Card ***************1111 on file."
    a, b = (PIIGuard(action="hash", hash_salt="x" * 16).anonymize(text) for _ in range(2))
    assert a == b


def test_block_per_entity():
    guard = PIIGuard(actions={"CREDIT_CARD": "block"})
    with pytest.raises(GuardBlockedError, match="CREDIT_CARD"):
        guard.anonymize("Card 4111 1111 1111 1111", vault=PIIVault())
    assert guard.anonymize("Hi John Smith", vault=PIIVault()) == "Hi <PERSON_1>"


PROMPT = (
    "Hi, I am Maria Gonzalez (maria.gonzalez@example.com, phone 780-999-2181). My card 4111 1111 1111 1111 was "
    "charged twice; please refund it and write to me at 1600 Pennsylvania Avenue, Washington."
)
VALUES = ["Maria Gonzalez", "maria.gonzalez@example.com", "780-999-2181", "4111 1111 1111 1111", "Pennsylvania"]


class RemoteSpy(GenericFakeChatModel):
    """A fake remote LLM that answers with every placeholder it was shown, and records its prompts."""

    prompts: ClassVar[list] = []

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        text = " ".join(str(m.content) for m in messages)
        self.prompts.append(text)
        placeholders = " ".join(dict.fromkeys(re.findall(r"<[A-Z_]+_\d+>", text)))
        self.messages = iter([AIMessage(f"Dear customer, noted: {placeholders}.")])
        return super()._generate(messages, stop, run_manager, **kwargs)


def test_round_trip_restores_every_value_and_no_pii_reaches_the_remote_model():
    remote = RemoteSpy(messages=iter([]), prompts=[])
    pii = PIIGuard()
    answer = Guarded(remote, guards=[pii]).invoke(PROMPT)
    sent = remote.prompts[0]
    assert not any(value in sent for value in VALUES), sent
    report = answer.response_metadata["guard_report"]
    restored = answer.content
    # every placeholder the model echoed came back as the exact original value
    for finding in report.findings["input"]:
        assert PROMPT[finding.start : finding.end] in restored
    assert "<" not in restored
    assert {f.entity_type for f in report.findings["input"]} >= {
        "PERSON",
        "EMAIL_ADDRESS",
        "PHONE_NUMBER",
        "CREDIT_CARD",
        "STREET_ADDRESS",
    }


def test_output_action_redacts_pii_the_user_did_not_supply():
    pii = PIIGuard(output_action="redact")
    model = GenericFakeChatModel(messages=iter([AIMessage("<PERSON_1>, Bob Miller's number is 780-999-2181.")]))
    out = Guarded(model, guards=[pii]).invoke("I am John Smith")
    assert out.content.startswith("John Smith, [PERSON]")
    assert "[PHONE_NUMBER]" in out.content
    assert "Bob" not in out.content


def test_detection_in_a_fresh_process_leaves_torch_out():
    """spaCy and Presidio import torch and transformers when installed; PII detection uses neither, and importing
    them was most of a cold `slmkit ask`."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from slmkit.guards import PIIGuard\n"
        "print([f.entity_type for f in PIIGuard().detect('Please call John Smith tomorrow.')])\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
        "import torch\n"  # and the process can still use torch afterwards
        "print(torch.tensor([1, 2]).sum().item())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[:3] == ["['PERSON']", "[]", "3"]


def test_the_routers_privacy_detector_ignores_companies_and_dates_but_not_people():
    from slmkit.routing.privacy import default_detector

    detector = default_detector()
    assert detector.detect("The GridBox 3 is made by Lumen Grid Energy in Berlin since March 2021.") == []
    found = {f.entity_type for f in detector.detect("Ask Dana Whitfield at dana.whitfield@lumengrid.example.")}
    assert found == {"PERSON", "EMAIL_ADDRESS"}
