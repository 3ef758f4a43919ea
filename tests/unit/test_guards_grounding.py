"""GroundingGuard without model files: span features, what it cannot judge, verdicts and actions.

The cross-encoder is replaced by a stub that scores a pair by the share of the query's words found in the passage,
so these tests run offline in milliseconds; tests/integration/test_guards_grounding.py uses the real model.
"""

from __future__ import annotations

import numpy as np
import pytest

from slmkit.guards import GroundingGuard, SentenceSupport
from slmkit.guards.grounding import UNJUDGED_SCORE, answer_features
from slmkit.guards.grounding_signals import ContextIndex, is_english, judgeable, span_features
from slmkit.guards.text import split_sentences, words

CONTEXT = [
    "Blue Bell was founded in 1907 in Brenham, Texas. Its CEO Paul Kruse apologised in a statement.",
    "Five people were infected in Kansas and three of them died.",
]


class WordOverlapEncoder:
    """Stands in for the MS MARCO cross-encoder: logit from the share of query words in the passage."""

    def __init__(self) -> None:
        self.calls = 0

    def logits(self, pairs):
        self.calls += len(pairs)
        out = []
        for query, passage in pairs:
            q = {w.lower() for w in words(query)}
            p = {w.lower() for w in words(passage)}
            out.append(10 * len(q & p) / max(1, len(q)) - 5)
        return np.asarray(out, dtype=float)


@pytest.fixture
def guard() -> GroundingGuard:
    return GroundingGuard(cross_encoder=WordOverlapEncoder())  # type: ignore[arg-type]


def spans(answer: str, question: str | None = None) -> dict[str, float]:
    names = ("content", "unsupported", "run", "local", "numbers", "names")
    row = span_features(split_sentences(answer), ContextIndex.build(CONTEXT), question)[0]
    return dict(zip(names, row, strict=True))


def test_span_features_count_what_the_context_lacks():
    assert spans("Blue Bell was founded in 1907 in Brenham, Texas.")["unsupported"] == 0
    bad = spans("Blue Bell was founded in 1975 in Miami by Michael Jordan.")
    assert bad["numbers"] == 1
    assert bad["names"] == 3  # Miami, Michael, Jordan
    assert bad["unsupported"] == 3
    assert bad["run"] == 3


def test_question_words_and_answer_phrasing_are_not_unsupported():
    # words the question asked with, and words an answer uses to talk about the passages, are not invented facts
    plain = spans("Based on the given passages, the outbreak killed three people in Kansas.")
    asked = spans(
        "Based on the given passages, the outbreak killed three people in Kansas.",
        question="How many people did the outbreak kill?",
    )
    assert plain["unsupported"] == 2  # outbreak, killed
    assert asked["unsupported"] == 0


def test_language_and_empty_sentences():
    assert judgeable("Blue Bell was founded in 1907.") == ""
    assert judgeable("1907.") == ""
    assert judgeable("Sure, I hope this helps!") == "empty"
    assert judgeable("Der Betrieb wurde 1907 in Brenham gegründet und ist nicht geschlossen.") == "language"
    assert judgeable("Blue Bell fue fundada en 1907 en Brenham y es una empresa de helados.") == "language"
    assert judgeable("蓝铃公司成立于1907年。") == "language"
    assert is_english(" ".join(CONTEXT))


def test_an_answer_in_another_language_is_unverified_never_supported(guard):
    result = guard.check(
        answer="Blue Bell wurde 1907 in Brenham, Texas, gegründet und ist nicht geschlossen.", context=CONTEXT
    )
    assert result.verdict == "unverified"
    assert result.score == UNJUDGED_SCORE
    assert [(s.status, s.supported) for s in result.sentences] == [("unverified", False)]


def test_a_context_in_another_language_makes_everything_unverified(guard):
    context = ["Blue Bell wurde 1907 in Brenham gegründet. Der Betrieb ist nicht geschlossen und die Firma ist alt."]
    result = guard.check(answer="Blue Bell was founded in 1907.", context=context)
    assert result.verdict == "unverified"
    assert all(s.status == "unverified" for s in result.sentences)


def test_a_mixed_language_answer_is_not_supported(guard):
    answer = "Blue Bell was founded in 1907 in Brenham, Texas. Der Chef wurde 2020 entlassen und ist nicht mehr da."
    result = guard.check(answer=answer, context=CONTEXT)
    assert [s.status for s in result.sentences][1] == "unverified"
    assert result.verdict != "supported"


def test_a_sentence_with_nothing_to_check_is_unverified_and_left_alone():
    guard = GroundingGuard(cross_encoder=WordOverlapEncoder(), action="drop")  # type: ignore[arg-type]
    answer = "Blue Bell was founded in 1907 in Brenham, Texas. I hope this helps!"
    result = guard.check(answer=answer, context=CONTEXT)
    assert [s.status for s in result.sentences] == ["supported", "unverified"]
    assert result.verdict == "supported"
    assert guard.apply(answer, result) == answer  # drop removes unsupported sentences, not unverified ones


def test_supported_outscores_unsupported_and_thresholds_are_probabilities(guard):
    good = guard.check(answer="Blue Bell was founded in 1907 in Brenham, Texas.", context=CONTEXT)
    bad = guard.check(answer="Blue Bell was founded in 1975 in Miami, Florida, by Michael Jordan.", context=CONTEXT)
    assert guard.config.threshold == guard.config.answer_threshold == 0.5
    assert good.score > bad.score
    assert good.verdict == "supported"
    assert good.sentences[0].status == "supported"
    assert bad.verdict == "unsupported"
    assert bad.sentences[0].status == "unsupported"
    assert 0.0 <= bad.score <= good.score <= 1.0


def test_an_added_unsupported_clause_lowers_the_score(guard):
    base = "Five people were infected in Kansas and three of them died."
    longer = base[:-1] + ", and the company paid 40 million dollars to their families."
    assert guard.check(answer=longer, context=CONTEXT).score < guard.check(answer=base, context=CONTEXT).score


def test_the_cross_encoder_sees_each_judged_sentence_once():
    encoder = WordOverlapEncoder()
    guard = GroundingGuard(
        cross_encoder=encoder,  # type: ignore[arg-type]
        signals=("spans", "structured", "cross_encoder"),
        check_citations=False,
    )
    guard.check(answer="Sure! Blue Bell was founded in 1907. Three people died.", context=CONTEXT)
    assert encoder.calls == 2


def test_the_default_signals_need_no_model():
    guard = GroundingGuard()
    assert guard.config.signals == ("spans", "structured")
    result = guard.check(answer="Blue Bell was founded in 1907 in Brenham, Texas.", context=CONTEXT)
    assert guard._cross_encoder is None
    assert "relevance" not in result.sentences[0].signals
    assert result.verdict == "supported"


def test_answer_features_sum_over_sentences():
    features = {
        "content_words": np.array([4.0, 6.0]),
        "unsupported_words": np.array([0.0, 3.0]),
        "unsupported_run": np.array([0.0, 2.0]),
        "local_unsupported": np.array([1.0, 3.0]),
        "unsupported_numbers": np.array([0.0, 5.0]),
        "unsupported_names": np.array([1.0, 0.0]),
        "relevance": np.array([2.0, -4.0]),
    }
    out = {k: float(v[0]) for k, v in answer_features(features).items()}
    assert out["unsupported_share"] == pytest.approx(0.3)
    assert out["numbers"] == 3.0  # capped
    assert out["relevance.min"] == -4.0
    assert out["relevance.mean"] == -1.0


def test_sentence_status_and_supported_agree():
    row = SentenceSupport(index=0, start=0, end=1, text="x", score=0.9, supported=True, status="unverified")
    assert row.supported is False
    assert SentenceSupport(index=0, start=0, end=1, text="x", score=0.1, supported=False).status == "unsupported"
