"""Cascade confidence signals (CombinedConfidence, ConsistencyConfidence), alone and inside a real Cascade."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field, ValidationError

from slmkit.routing import (
    Cascade,
    KeepLocalIfPII,
    LogprobConfidence,
    Route,
    RoutedChatModel,
    RoutingDecision,
    RoutingPolicy,
)
from slmkit.routing.cascade import (
    CombinedConfidence,
    ConsistencyConfidence,
    GroundingConfidence,
    answers_agree,
    token_f1,
)
from slmkit.routing.request import RoutingRequest


class Scripted(BaseChatModel):
    """Answers from a script of messages."""

    script: list[AIMessage] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any):
        return ChatResult(generations=[ChatGeneration(message=self.script.pop(0))])


class NoPII:
    """A PII detector that finds nothing: these tests are about confidence, not privacy (which has its own)."""

    def detect(self, text: str) -> list[Any]:
        return []


class FixedSupport:
    """A grounding checker that returns a fixed support and records the context it was given."""

    def __init__(self, support: float) -> None:
        self.support = support
        self.contexts: list[Any] = []

    def check(self, *, answer: str, context: Any, question: str | None = None) -> SimpleNamespace:
        self.contexts.append(context)
        return SimpleNamespace(score=self.support)


def sure(text: str, prob: float | None) -> AIMessage:
    meta = {"confidence": {"geometric_mean_prob": prob}} if prob is not None else {}
    return AIMessage(text, response_metadata=meta)


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def combined(support: float, **kwargs: Any) -> tuple[CombinedConfidence, FixedSupport]:
    checker = FixedSupport(support)
    signal = CombinedConfidence(
        signals=[LogprobConfidence(), GroundingConfidence(checker=checker)], weights=[2.0, -1.0], bias=0.5, **kwargs
    )
    return signal, checker


@pytest.mark.parametrize(("prob", "support"), [(0.8, 0.3), (0.1, 0.9), (0.99, 0.0)])
def test_combined_confidence_is_the_logistic_of_the_weighted_scores(prob, support):
    signal, checker = combined(support)
    request = RoutingRequest([SystemMessage("Paris is in France."), HumanMessage("Where is Paris?")])
    score = signal.score(request, sure("France", prob), Scripted())
    assert score == pytest.approx(sigmoid(0.5 + 2.0 * prob - 1.0 * support))
    assert checker.contexts == [["Paris is in France."]]  # grounding read the system message


def test_combined_confidence_with_a_missing_signal():
    request = RoutingRequest([SystemMessage("ctx"), HumanMessage("q")])
    assert combined(0.4)[0].score(request, sure("a", None), Scripted()) is None
    filled = combined(0.4, missing=0.0)[0].score(request, sure("a", None), Scripted())
    assert filled == pytest.approx(sigmoid(0.5 - 0.4))


def test_combined_confidence_needs_one_weight_per_signal():
    with pytest.raises(ValidationError, match="one weight per signal"):
        CombinedConfidence(signals=[LogprobConfidence()], weights=[1.0, 2.0])
    with pytest.raises(ValidationError):
        CombinedConfidence(signals=[], weights=[])


def test_combined_confidence_names_its_parts():
    assert combined(0.5)[0].name == "combined(logprob:geometric_mean_prob, GroundingConfidence)"


@pytest.mark.parametrize(("prob", "support", "route"), [(0.9, 0.1, "slm"), (0.1, 0.9, "llm")])
def test_cascade_escalates_on_the_combined_score(prob, support, route):
    signal, _ = combined(support)
    threshold = sigmoid(0.5 + 2.0 * 0.5 - 0.5)  # the score of prob = support = 0.5
    slm, llm = Scripted(script=[sure("local", prob)]), Scripted(script=[sure("remote", None)])
    policy = RoutingPolicy(
        routes={"slm": Route(model=slm, local=True), "llm": Route(model=llm)},
        cascade=Cascade(first="slm", then="llm", escalate_below=threshold, confidence=signal),
        rules=[KeepLocalIfPII(detector=NoPII())],
    )
    out = RoutedChatModel(policy=policy).invoke([SystemMessage("ctx"), HumanMessage("q")])
    decision = RoutingDecision.from_message(out)
    assert decision.route == route
    assert decision.signal("confidence").value == pytest.approx(sigmoid(0.5 + 2.0 * prob - support), abs=1e-4)
    assert out.content == ("local" if route == "slm" else "remote")


# -- ConsistencyConfidence -------------------------------------------------------------------------------------------
class Sampler(BaseChatModel):
    """Answers from a script of texts and records the keyword arguments of every call."""

    texts: list[str] = Field(default_factory=list)
    calls: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "sampler"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any):
        self.calls.append({"messages": messages, **kwargs})
        return ChatResult(generations=[ChatGeneration(message=AIMessage(self.texts.pop(0)))])


class Ignoring(BaseChatModel):
    """A deterministic model that ignores temperature and seed: it always gives the same answer."""

    text: str

    @property
    def _llm_type(self) -> str:
        return "ignoring"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any):
        return ChatResult(generations=[ChatGeneration(message=AIMessage(self.text))])


@pytest.mark.parametrize(
    ("a", "b", "f1", "contained"),
    [
        ("Paris", "paris", True, True),
        ("The Eiffel Tower.", "eiffel tower", True, True),  # articles and punctuation do not count
        ("Paris", "It is Paris.", True, True),  # F1 exactly 0.5 agrees; containment either way round
        ("It is Paris, France.", "Paris", False, True),  # F1 0.4
        ("Paris", "The capital of France is Paris, a city.", False, True),  # F1 2/7
        ("Obama was born in Hawaii", "Obama was born in Honolulu, Hawaii", True, False),  # F1 10/11
        ("Paris", "Parisian", False, False),  # whole words only
        ("New York", "York New", True, False),  # F1 ignores order; containment needs a contiguous run
        ("1998", "1999", False, False),
        ("", "", False, False),  # an empty answer agrees with nothing
        ("The", "the", False, False),  # nothing left after normalisation
    ],
)
def test_answers_agree(a, b, f1, contained):
    assert answers_agree(a, b) is f1  # token F1 >= 0.5 is the default
    assert answers_agree(a, b, "token_f1") is f1
    assert answers_agree(a, b, "containment") is contained


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [("Paris", "paris", 1.0), ("Paris", "It is Paris.", 0.5), ("New York City", "York", 0.5), ("x y", "z", 0.0)],
)
def test_token_f1(a, b, expected):
    assert token_f1(a, b) == pytest.approx(expected)
    assert token_f1(b, a) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("answer", "samples", "expected"),
    [
        ("Paris", ["Paris", "paris.", "It is Paris.", "Paris, France", "Paris"], 1.0),
        ("Paris", ["Paris", "Lyon", "Paris", "Marseille", "Lyon"], 0.4),
        ("Paris", ["Lyon", "Lyon", "Nice", "Lyon", "Lyon"], 0.0),
        ("Yes", ["yes", "No", "no", "no", "Yes."], 0.4),
    ],
)
def test_consistency_is_the_share_of_agreeing_samples(answer, samples, expected):
    model = Sampler(texts=list(samples))
    request = RoutingRequest([SystemMessage("ctx"), HumanMessage("Capital of France?")])
    signal = ConsistencyConfidence(samples=len(samples), temperature=0.9, seed=7, max_tokens=12)
    assert signal.score(request, AIMessage(answer), model) == pytest.approx(expected)
    # every sample re-asks the same messages, sampled, each with its own seed
    assert [c["seed"] for c in model.calls] == [7, 8, 9, 10, 11]
    assert {c["temperature"] for c in model.calls} == {0.9}
    assert {c["max_tokens"] for c in model.calls} == {12}
    assert all([m.content for m in c["messages"]] == ["ctx", "Capital of France?"] for c in model.calls)


def test_consistency_by_containment():
    texts = ["The capital of France is Paris.", "Lyon", "paris", "It's Paris, France"]
    signal = ConsistencyConfidence(samples=4, agreement="containment")
    request = RoutingRequest([HumanMessage("Capital of France?")])
    assert signal.score(request, AIMessage("Paris"), Sampler(texts=list(texts))) == pytest.approx(0.75)
    by_f1 = ConsistencyConfidence(samples=4).score(request, AIMessage("Paris"), Sampler(texts=list(texts)))
    assert by_f1 == pytest.approx(0.5)  # "paris" and "its paris france" (F1 0.5); not the sentence (F1 2/7)


def test_consistency_without_seed_or_limit_passes_neither():
    model = Sampler(texts=["b", "c"])
    score = ConsistencyConfidence(samples=2, seed=None).score(
        RoutingRequest([HumanMessage("q")]), AIMessage("b"), model
    )
    assert score == 0.5
    assert all("seed" not in c and "max_tokens" not in c for c in model.calls)
    assert [c["temperature"] for c in model.calls] == [0.7, 0.7]


def test_consistency_of_an_empty_answer_is_zero_without_sampling():
    model = Sampler(texts=[])
    assert ConsistencyConfidence().score(RoutingRequest([HumanMessage("q")]), AIMessage(" . "), model) == 0.0
    assert model.calls == []


@pytest.mark.parametrize(("repeat", "expected"), [("Paris", 1.0), ("Lyon", 0.0)])
def test_consistency_with_a_model_that_ignores_temperature(repeat, expected):
    """Such a model repeats one answer: the score says only whether the judged answer is that answer."""
    score = ConsistencyConfidence().score(
        RoutingRequest([HumanMessage("q")]), AIMessage("Paris"), Ignoring(text=repeat)
    )
    assert score == expected


def test_consistency_settings_are_validated_and_named():
    assert ConsistencyConfidence().name == "consistency:5@0.7:token_f1"
    with pytest.raises(ValidationError):
        ConsistencyConfidence(samples=0)
    with pytest.raises(ValidationError):
        ConsistencyConfidence(temperature=0.0)


@pytest.mark.parametrize(("samples", "route"), [(["four", "Four.", "five"], "slm"), (["five", "six", "four"], "llm")])
def test_cascade_escalates_on_consistency(samples, route):
    """In a real RoutedChatModel the first route's answer is judged by sampling that same route (the question
    says nothing private, so no PII rule keeps it local)."""
    slm = Sampler(texts=["four", *samples])
    llm = Scripted(script=[sure("remote", None)])
    policy = RoutingPolicy(
        routes={"slm": Route(model=slm, local=True), "llm": Route(model=llm)},
        cascade=Cascade(first="slm", then="llm", escalate_below=0.5, confidence=ConsistencyConfidence(samples=3)),
    )
    out = RoutedChatModel(policy=policy).invoke([HumanMessage("q")])
    decision = RoutingDecision.from_message(out)
    assert decision.route == route
    assert decision.signal("confidence").value == pytest.approx(
        sum(answers_agree("four", s) for s in samples) / 3, abs=1e-4
    )
    assert len(slm.calls) == 4  # the answer and three samples
    assert slm.texts == []
    assert out.content == ("four" if route == "slm" else "remote")
