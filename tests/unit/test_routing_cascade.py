"""CombinedConfidence: the logistic combination of confidence signals, alone and inside a real Cascade."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field, ValidationError

from slmkit.routing import Cascade, LogprobConfidence, Route, RoutedChatModel, RoutingDecision, RoutingPolicy
from slmkit.routing.cascade import CombinedConfidence, GroundingConfidence
from slmkit.routing.request import RoutingRequest


class Scripted(BaseChatModel):
    """Answers from a script of messages."""

    script: list[AIMessage] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any):
        return ChatResult(generations=[ChatGeneration(message=self.script.pop(0))])


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
    )
    out = RoutedChatModel(policy=policy).invoke([SystemMessage("ctx"), HumanMessage("q")])
    decision = RoutingDecision.from_message(out)
    assert decision.route == route
    assert decision.signal("confidence").value == pytest.approx(sigmoid(0.5 + 2.0 * prob - support), abs=1e-4)
    assert out.content == ("local" if route == "slm" else "remote")
