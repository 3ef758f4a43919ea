"""The assistant's cascade (``slmkit.agent.cascade``): unsure local answers are asked again of the remote model."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage

from slmkit.agent import Answer, Assistant, AssistantConfig
from slmkit.agent.cascade import escalation_reason
from slmkit.agent.catalogue import REMOTE_PROFILE
from slmkit.agent.decline import DeclineRule
from slmkit.routing import Route, RoutedChatModel, RoutingDecision, RoutingPolicy
from tests.unit.test_assistant import Scripted, kb  # noqa: F401 - kb is a fixture

QUESTION = "How much energy does the battery store?"
# answer_score from answer support alone: an invented answer scores low, a copied one high; threshold 0 never
# declines, so only the cascade acts on the score
SCORE = DeclineRule(weights={"answer_support": 10.0}, bias=-5.0, threshold=0.0)


class Unreachable(Scripted):
    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> Any:
        raise ConnectionError("Connection refused: http://127.0.0.1:9/v1")


def cascade(monkeypatch, kb, local_reply: str, remote: Scripted, **remote_config: Any) -> tuple[Assistant, Scripted]:  # noqa: F811
    import slmkit.agent.assistant as module

    local = Scripted(messages=iter([AIMessage(local_reply)]))
    routes = {"local": Route(model=local, local=True), "remote": Route(model=Scripted(messages=iter([])))}
    monkeypatch.setattr(module, "default_router", lambda config: RoutedChatModel(policy=RoutingPolicy(routes=routes)))
    monkeypatch.setattr(module, "_openai_compatible", lambda remote_cfg, config: remote)
    config = AssistantConfig(
        model="smollm2-135m-instruct",
        decline=SCORE,
        remote={"base_url": "http://127.0.0.1:9/v1", "model": "big-llm", "escalate_below": 0.5} | remote_config,
    )
    return Assistant(kb, guards=[], config=config), local


def test_an_unsure_local_answer_is_answered_again_by_the_remote_model_with_its_own_prompt(monkeypatch, kb):  # noqa: F811
    remote = Scripted(messages=iter([AIMessage("The battery stores 13.5 kWh of energy [1].")]))
    assistant, local = cascade(monkeypatch, kb, "It stores hydrogen in vanadium flasks.", remote)
    answer = assistant.ask(QUESTION)
    assert "13.5 kWh" in answer.text
    assert answer.routing is not None
    assert (answer.routing.route, answer.routing.escalated, answer.routing.cascade) == ("remote", True, True)
    assert "answer_score" in answer.routing.reason
    assert answer.signals["local_answer_score"] < 0.5
    assert answer.timings["total_ms"] >= answer.timings["local_ms"] > 0
    assert len(local.seen) == 1
    assert len(remote.seen) == 1
    # the remote model reads with the remote profile (not the 135M model's excerpts and prompt)
    assert REMOTE_PROFILE.instructions in str(remote.seen[0][0].content)


def test_a_sure_local_answer_stays_and_the_remote_model_is_not_called(monkeypatch, kb):  # noqa: F811
    remote = Scripted(messages=iter([]))
    assistant, _ = cascade(monkeypatch, kb, "The battery stores 13.5 kWh of energy.", remote)
    answer = assistant.ask(QUESTION)
    assert "13.5 kWh" in answer.text
    assert answer.routing is not None
    assert not answer.routing.escalated
    assert answer.signals["answer_score"] >= 0.5
    assert remote.seen == []


def test_a_local_decline_stands(monkeypatch, kb):  # noqa: F811
    remote = Scripted(messages=iter([]))
    assistant, _ = cascade(monkeypatch, kb, "The documents do not say.", remote)
    answer = assistant.ask(QUESTION)
    assert answer.abstained
    assert remote.seen == []


def test_an_unreachable_remote_leaves_the_local_answer_and_says_why(monkeypatch, kb):  # noqa: F811
    assistant, _ = cascade(monkeypatch, kb, "It stores hydrogen in vanadium flasks.", Unreachable(messages=iter([])))
    answer = assistant.ask(QUESTION)
    assert "hydrogen" in answer.text
    assert answer.routing is not None
    assert not answer.routing.escalated
    assert "escalation failed (ConnectionError: Connection refused" in answer.routing.reason
    assert "at http://127.0.0.1:9/v1; is the server running?" in answer.routing.reason


def test_auto_takes_the_local_profiles_operating_point(monkeypatch, kb):  # noqa: F811
    from slmkit.agent.catalogue import profile_for

    assistant, _ = cascade(monkeypatch, kb, "x", Scripted(messages=iter([])), escalate_below="auto")
    profile = profile_for("smollm2-135m-instruct")
    assert profile is not None
    assert profile.escalate_below is not None
    assert assistant.escalate_below == profile.escalate_below
    assert assistant.remote_assistant is not None


@pytest.mark.parametrize(
    ("routing", "signals", "abstained", "escalates"),
    [
        (
            RoutingDecision(route="local", planned_route="local", reason="", allowed_routes=["local", "remote"]),
            {"answer_score": 0.1},
            False,
            True,
        ),
        # private data kept the question local: it never leaves, however unsure the answer
        (
            RoutingDecision(route="local", planned_route="local", reason="", allowed_routes=["local"]),
            {"answer_score": 0.1},
            False,
            False,
        ),
        # the remote route answered already (a long prompt)
        (
            RoutingDecision(route="remote", planned_route="remote", reason="", allowed_routes=["local", "remote"]),
            {"answer_score": 0.1},
            False,
            False,
        ),
        (None, {"answer_score": 0.1}, True, False),  # a decline stands
        (None, {}, True, False),  # nothing relevant retrieved: no model was asked
        (None, {"min_prob": 0.2}, False, True),  # a model without a decline rule: token confidence
        (None, {"answer_score": 0.7}, False, False),
    ],
)
def test_escalation_reason(routing, signals, abstained, escalates):
    answer = Answer(text="t", routing=routing, signals=signals, abstained=abstained)
    assert (escalation_reason(answer, 0.5) is not None) == escalates


def test_escalate_below_is_a_share_or_auto():
    from slmkit.agent import RemoteModelConfig

    with pytest.raises(ValueError, match="between 0 and 1"):
        RemoteModelConfig(base_url="http://127.0.0.1:9/v1", model="m", escalate_below=1.5)
    with pytest.raises(ValueError):
        RemoteModelConfig(base_url="http://127.0.0.1:9/v1", model="m", escalate_below="sometimes")  # type: ignore[arg-type]
    assert (
        RemoteModelConfig(base_url="http://127.0.0.1:9/v1", model="m", escalate_below="auto").escalate_below == "auto"
    )
