"""GroundingGuard with the real packaged cross-encoder on hand-written supported and unsupported answers."""

from __future__ import annotations

import pytest
from langchain_core.documents import Document

from slmkit.guards import GroundingGuard

CONTEXT = [
    Document(
        page_content="The Blue Bell plant in Broken Arrow, Oklahoma, was shut down after listeria was found in a "
        "3-ounce cup of ice cream. Five people were infected in Kansas and three of them died.",
        id="chunk-1",
    ),
    Document(
        page_content="Blue Bell was founded in 1907 in Brenham, Texas. Its CEO Paul Kruse apologised in a statement.",
        id="chunk-2",
    ),
]


@pytest.fixture(scope="module")
def guard() -> GroundingGuard:
    return GroundingGuard()


SUPPORTED = [
    "Blue Bell shut down its Broken Arrow plant after listeria was found in a cup of ice cream.",
    "Five people were infected in Kansas, and three of them died. The CEO, Paul Kruse, apologised.",
    "Blue Bell was founded in Brenham, Texas, in 1907.",
]
UNSUPPORTED = [
    "Blue Bell was fined 40 million dollars by the Food and Drug Administration in 2016.",
    "The outbreak began at a wedding in Denver, where 200 guests ate contaminated cheese.",
    "Blue Bell was founded in 1975 in Miami, Florida, by Michael Jordan.",
]


@pytest.mark.parametrize("answer", SUPPORTED)
def test_supported_answers_score_high(guard, answer):
    result = guard.check(answer=answer, context=CONTEXT, question="What happened at Blue Bell?")
    assert result.score >= 0.5, result
    assert result.verdict == "supported"


@pytest.mark.parametrize("answer", UNSUPPORTED)
def test_unsupported_answers_score_low(guard, answer):
    result = guard.check(answer=answer, context=CONTEXT, question="What happened at Blue Bell?")
    assert result.score < 0.5, result
    assert result.verdict == "unsupported"


def test_every_supported_answer_outranks_every_unsupported_one(guard):
    good = [guard.check(answer=a, context=CONTEXT).score for a in SUPPORTED]
    bad = [guard.check(answer=a, context=CONTEXT).score for a in UNSUPPORTED]
    assert min(good) > max(bad)


def test_a_capitalised_stop_word_is_not_an_unsupported_name(guard):
    # "IT" is "it" once lower-cased: a stop word, so never among the context's content words. It used to count as
    # a name the context lacks, and the README's own answer scored "unsupported".
    context = [
        "2. Laptops. Every laptop uses full-disk encryption and locks its screen after 5 minutes without use. A lost "
        "or stolen laptop must be reported to the IT service desk within 2 hours."
    ]
    answer = "A lost laptop must be reported to the IT service desk within 2 hours."
    result = guard.check(answer=answer, context=context, question="How quickly must a lost laptop be reported?")
    assert result.sentences[0].signals["unsupported_names"] == 0.0
    assert result.verdict == "supported", result


def test_mixed_answer_actions():
    answer = f"{SUPPORTED[0]} {UNSUPPORTED[0]}"
    drop = GroundingGuard(action="drop")
    result = drop.check(answer=answer, context=CONTEXT)
    assert [s.supported for s in result.sentences] == [True, False]
    assert drop.apply(answer, result) == SUPPORTED[0]
    abstain = GroundingGuard(action="abstain")
    assert abstain.apply(answer, abstain.check(answer=answer, context=CONTEXT)).endswith(
        "The documents do not say this."
    )
    escalate = GroundingGuard(action="escalate")
    result = escalate.check(answer=answer, context=CONTEXT)
    assert escalate.apply(answer, result) == answer
    assert result.escalate


def test_citation_to_a_chunk_that_does_not_support_the_sentence_is_flagged(guard):
    answer = "Blue Bell was founded in 1907 in Brenham, Texas [2]. Five people were infected in Kansas [2]."
    result = guard.check(answer=answer, context=CONTEXT)
    assert result.sentences[0].bad_citations == []
    assert result.sentences[1].bad_citations == ["2"]


def test_structured_context_conflicts():
    business = {"name": "Finch & Fork", "attributes": {"OutdoorSeating": False, "WiFi": "free", "Music": None}}
    guard = GroundingGuard()
    ok = guard.check(answer="Finch & Fork does not offer outdoor seating.", context=business)
    wrong = guard.check(answer="Finch & Fork offers outdoor seating.", context=business)
    assert ok.score > wrong.score
    assert wrong.sentences[0].signals["attribute_consistency"] == 0.0


def test_the_cross_encoder_signal_reads_the_packaged_model():
    guard = GroundingGuard(signals=("spans", "structured", "cross_encoder"))
    good = guard.check(answer=SUPPORTED[2], context=CONTEXT, question="When was Blue Bell founded?")
    bad = guard.check(answer=UNSUPPORTED[2], context=CONTEXT, question="When was Blue Bell founded?")
    assert good.signals == ["spans", "structured", "cross_encoder"]
    assert good.sentences[0].signals["relevance"] > 0  # the MS MARCO logit of (sentence, best context sentence)
    assert good.score > bad.score


def test_rag_style_answers_and_refusals(guard):
    # an LLM's phrasing ("Based on the given passages") and a refusal are not invented facts
    question = "How many people died in Kansas?"
    ok = guard.check(
        answer="Based on the given passages, three people died in Kansas.", context=CONTEXT, question=question
    )
    refusal = guard.check(answer="Unable to answer based on given passages.", context=CONTEXT, question="Who owns it?")
    added = guard.check(
        answer="Based on the given passages, three people died in Kansas. The victims were all over 80 years old and "
        "had eaten strawberry ice cream in a nursing home in Wichita.",
        context=CONTEXT,
        question=question,
    )
    assert ok.verdict == "supported"
    assert refusal.verdict == "supported"
    assert added.verdict != "supported"
    assert [s.status for s in added.sentences] == ["supported", "unsupported"]


def test_no_context():
    result = GroundingGuard().check(answer="Anything.", context=[])
    assert result.verdict == "no_context"


@pytest.mark.model
def test_slm_signal_with_the_local_smollm2():
    from slmkit.agent.grounding_scorer import local_grounding_scorer

    scorer = local_grounding_scorer("smollm2-135m-instruct")
    guard = GroundingGuard(signals=("lexical", "structured", "embedding", "slm"), scorer=lambda: scorer)
    context = [CONTEXT[1].page_content]
    good = guard.check(answer=SUPPORTED[2], context=context)
    bad = guard.check(answer=UNSUPPORTED[2], context=context)
    assert set(good.sentences[0].signals) >= {"mean_pmi", "mean_logprob", "unexplained"}
    assert good.score > bad.score
    # the scorer reuses its KV cache: scoring the same text again gives the same log-probabilities
    first = scorer.continuation_logprobs("Document: a cat.\n\nAnswer:\n", "A cat.")
    assert scorer.continuation_logprobs("Document: a cat.\n\nAnswer:\n", "A cat.") == first
