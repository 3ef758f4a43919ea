"""Routing policies with fake routes: each signal table-driven, constraints, cascade, fallbacks, sessions, stats."""

from __future__ import annotations

import functools
import json
import math
import operator
import re
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.exceptions import ModelConnectionError, ModelRateLimitError, ModelTimeoutError
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import BaseModel, Field, ValidationError

from slmkit.core.errors import NoRouteError, RoutesFailedError
from slmkit.routing import (
    Budget,
    Cascade,
    KeepLocalIfPII,
    Keywords,
    Learned,
    LearnedRouter,
    LogprobConfidence,
    PreferLargeIfLong,
    Route,
    RoutedChatModel,
    RoutingDecision,
    RoutingPolicy,
    RoutingStats,
    Semantic,
)
from slmkit.routing.cascade import SelfCheckConfidence
from slmkit.routing.chat_model import classify_failure
from slmkit.routing.request import RoutingRequest


class Scripted(BaseChatModel):
    """A chat model that answers from a script (messages or exceptions) and records what it was sent."""

    script: list[Any] = Field(default_factory=list)
    default: str = "ok"
    seen: list[list[BaseMessage]] = Field(default_factory=list)
    seen_kwargs: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any):
        self.seen.append(list(messages))
        self.seen_kwargs.append(kwargs)
        item = self.script.pop(0) if self.script else self.default
        if isinstance(item, BaseException):
            raise item
        message = item if isinstance(item, AIMessage) else AIMessage(content=item)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def bind_tools(self, tools: Any, *, tool_choice: Any = None, **kwargs: Any):
        return self.bind(tools=tools, tool_choice=tool_choice, **kwargs)


def answer(text: str, confidence: float | None = None, tokens: tuple[int, int] = (10, 5)) -> AIMessage:
    meta = {"confidence": {"geometric_mean_prob": confidence, "mean_prob": confidence, "min_prob": confidence}}
    return AIMessage(
        content=text,
        response_metadata=meta if confidence is not None else {},
        usage_metadata={"input_tokens": tokens[0], "output_tokens": tokens[1], "total_tokens": sum(tokens)},
    )


class RegexPII:
    """A tiny detector: e-mail addresses and the name 'Ada Lovelace'."""

    def detect(self, text: str) -> list[SimpleNamespace]:
        pattern = r"[\w.]+@[\w.]+\w|Ada Lovelace"
        return [
            SimpleNamespace(
                start=m.start(), end=m.end(), entity_type="EMAIL" if "@" in m.group() else "PERSON", score=1
            )
            for m in re.finditer(pattern, text)
        ]


def routes(**scripts: Any) -> dict[str, Route]:
    prices = {"slm": (0.0, 0.0, True), "mid": (0.5, 1.0, False), "llm": (2.0, 8.0, False)}
    out = {}
    for name, script in scripts.items():
        price_in, price_out, local = prices[name]
        model = script if isinstance(script, BaseChatModel) else Scripted(script=list(script))
        out[name] = Route(
            model=model, local=local, input_usd_per_1k=price_in, output_usd_per_1k=price_out, context_window=8000
        )
    return out


def policy(rules: list[Any] | None = None, **kwargs: Any) -> RoutingPolicy:
    kwargs.setdefault("routes", routes(slm=[], llm=[]))
    return RoutingPolicy(rules=[KeepLocalIfPII(detector=RegexPII()), *(rules or [])], **kwargs)


def decide(p: RoutingPolicy, text: str, **kwargs: Any) -> RoutingDecision:
    return p.plan(RoutingRequest([HumanMessage(text)]), **kwargs).decision


# -- signals, table-driven -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "route", "fired"),
    [("short question", "slm", False), ("word " * 1600, "llm", True), ("word " * 1400, "slm", False)],
)
def test_length_signal(text, route, fired):
    d = decide(policy([PreferLargeIfLong(tokens=1500)]), text)
    assert (d.route, d.signal("length").fired) == (route, fired)


@pytest.mark.parametrize(
    ("text", "route", "value"),
    [
        ("Please PROVE this lemma", "llm", "PROVE"),
        ("improve my essay", "slm", None),  # whole words only
        ("explain it step by step", "llm", "step by step"),
        ("complexity O(n^2) here", "llm", "O(n^2)"),
        ("hello", "slm", None),
    ],
)
def test_keyword_signal(text, route, value):
    rule = Keywords(words=["prove", "step by step"], patterns=[r"O\(n\^?\d\)"])
    d = decide(policy([rule]), text)
    assert (d.route, d.signal("keywords").value) == (route, value)


UTTERANCES = {"code": ["write a python function", "fix this stack trace"], "slm": ["hi there", "thanks!"]}


@pytest.mark.parametrize(
    ("text", "route", "fired"),
    [("write a python function", "llm", True), ("thanks!", "slm", True), ("an unrelated request", "slm", False)],
)
def test_semantic_signal(text, route, fired):
    # The fake embedding is a seeded random vector per text: identical texts match (similarity 1), others do not.
    rule = Semantic(utterances=UTTERANCES, to={"code": "llm"}, embeddings=DeterministicFakeEmbedding(size=64))
    d = decide(policy([rule]), text)
    assert (d.route, d.signal("semantic").fired) == (route, fired)


def _length_router() -> LearnedRouter:
    prompts = [f"question {i} " + "detail " * (i % 40) for i in range(200)]
    labels = [int(i % 40 >= 20) for i in range(200)]  # long prompts need the strong route
    return LearnedRouter(DeterministicFakeEmbedding(size=32), neighbours=8).fit(prompts, labels, target_share=0.5)


@pytest.mark.parametrize(("text", "route"), [("question x " + "detail " * 39, "llm"), ("question y", "slm")])
def test_learned_signal(text, route):
    d = decide(policy([Learned(router=_length_router())]), text)
    assert d.route == route
    assert 0.0 <= d.signal("learned").value <= 1.0


@pytest.mark.parametrize(
    ("text", "rule", "route", "pii"),
    [
        ("prove it", Keywords(words=["prove"]), "llm", False),
        ("prove it, I am Ada Lovelace", Keywords(words=["prove"]), "slm", True),
        ("prove it: mail ada@example.com", Keywords(words=["prove"]), "slm", True),
        ("hello Ada Lovelace", Keywords(words=["prove"]), "slm", None),  # local anyway: no scan at all
    ],
)
def test_pii_signal_keeps_private_data_local(text, rule, route, pii):
    d = decide(policy([rule]), text)
    assert d.route == route
    signal = d.signal("pii")
    assert (signal.fired if signal else None) == pii


def test_pii_in_history_and_system_messages_counts_too():
    p = policy([Keywords(words=["prove"])])
    request = RoutingRequest(
        [SystemMessage("User: ada@example.com"), HumanMessage("hi"), AIMessage("hello"), HumanMessage("prove it")]
    )
    assert p.plan(request).decision.route == "slm"


def test_a_policy_with_a_remote_route_always_checks_pii(monkeypatch):
    from slmkit.routing import privacy

    monkeypatch.setattr(privacy, "default_detector", lambda: RegexPII())
    p = RoutingPolicy(routes=routes(slm=[], llm=[]), rules=[Keywords(words=["prove"])])  # no KeepLocalIfPII listed
    assert decide(p, "prove it, Ada Lovelace").route == "slm"


def test_the_default_privacy_detector_looks_for_personal_data_only():
    from slmkit.guards.pii import PERSONAL_DATA
    from slmkit.routing import privacy

    privacy.default_detector.cache_clear()
    try:
        entities = privacy.default_detector().config.entities  # type: ignore[attr-defined]
    finally:
        privacy.default_detector.cache_clear()
    assert entities == list(PERSONAL_DATA)
    assert {"PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "STREET_ADDRESS"} <= set(entities)
    assert not {"ORGANIZATION", "LOCATION", "DATE_TIME", "NRP", "URL"} & set(entities)


def test_private_data_without_a_local_route_is_refused():
    p = policy([Keywords(words=["prove"])], routes=routes(mid=[], llm=[]), default="mid")
    with pytest.raises(NoRouteError, match="private data"):
        decide(p, "prove it, Ada Lovelace")


@pytest.mark.parametrize(("spent", "route"), [(0.0, "llm"), (3.5, "slm"), (5.5, "slm")])  # a call: ~$2.05
def test_budget_keeps_the_policy_local_when_spent(spent, route):
    stats = RoutingStats()
    stats._days[datetime.now(UTC).date()].cost_usd = spent
    d = decide(policy([Keywords(words=["prove"])], budget=Budget(usd_per_day=5.0)), "prove it", stats=stats)
    assert d.route == route
    assert d.signal("budget").fired == (route == "slm")


def test_context_window_rules_out_small_routes():
    p = policy(routes={**routes(slm=[]), "llm": Route(model=Scripted(), context_window=200_000)})
    d = decide(p, "word " * 9000)
    assert d.route == "llm"
    assert d.signal("context").fired
    with pytest.raises(NoRouteError, match="context window"):
        decide(p, "word " * 250_000)


def test_first_rule_that_fires_wins_and_later_rules_are_not_evaluated():
    p = policy([Keywords(words=["hello"], route="slm"), Keywords(words=["hello"], route="llm")])
    d = decide(p, "hello")
    assert d.route == "slm"
    assert [s.name for s in d.signals].count("keywords") == 1


# -- malformed policies fail at construction -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: RoutingPolicy(routes={}), "at least one route"),
        (lambda: policy(default="gpt"), "default names route 'gpt'"),
        (lambda: policy(cascade=Cascade(first="slm", then="gpt")), "cascade.then names route 'gpt'"),
        (lambda: policy([Keywords(words=["x"], route="gpt")]), "Keywords asks for route 'gpt'"),
        (lambda: policy(fallbacks={"llm": ["llm"]}), "itself as its own fallback"),
        (lambda: policy(fallbacks={"llm": ["nope"]}), "names route 'nope'"),
        (lambda: policy([Semantic(utterances={"code": ["x"]})]), r"categories \['code'\] are not route names"),
        (lambda: policy([KeepLocalIfPII()]), "at most once"),
        (lambda: Keywords(words=[]), "at least one word or pattern"),
        (lambda: Keywords(patterns=["(unclosed"]), "invalid regular expression"),
        (lambda: Learned(router=LearnedRouter()), "trained LearnedRouter"),
        (lambda: Budget(), "at least one limit"),
        (lambda: Cascade(first="slm", then="slm"), "two different routes"),
        (lambda: PreferLargeIfLong(tokens=0), "greater than or equal to 1"),
        (lambda: policy(rules=["not a rule"]), "rules"),
        (lambda: Route(model="gpt-4", local=False), "model"),
    ],
)
def test_malformed_policy_fails_at_construction(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_policy_construction_loads_nothing(monkeypatch):
    from slmkit.routing import embedding, privacy

    monkeypatch.setattr(embedding, "default_embeddings", lambda: pytest.fail("embedder created"))
    monkeypatch.setattr(privacy, "default_detector", lambda: pytest.fail("detector created"))
    policy([Semantic(utterances={"slm": ["hi"]})], cascade=Cascade(first="slm", then="llm"))


# -- the routed chat model -------------------------------------------------------------------------------------
def test_response_carries_the_decision_and_costs():
    llm = Scripted(script=[answer("42", tokens=(1000, 500))])
    routed = RoutedChatModel(policy=policy([Keywords(words=["prove"])], routes=routes(slm=[], llm=llm)))
    msg = routed.invoke("prove that 6*7 = 42")
    assert msg.content == "42"
    json.dumps(msg.response_metadata)  # plain data, serialisable
    d = RoutingDecision.from_message(msg)
    assert (d.route, d.rule) == ("llm", "Keywords")
    assert d.actual_cost_usd == pytest.approx(1000 * 2.0 / 1000 + 500 * 8.0 / 1000)
    assert d.estimated_cost_usd > 0
    assert d.attempts[0].exact_tokens


@pytest.mark.parametrize(
    ("confidence", "escalate_below", "route", "escalated"),
    [(0.9, 0.55, "slm", False), (0.3, 0.55, "llm", True), (None, 0.55, "llm", True)],
)
def test_cascade_escalates_unsure_answers(confidence, escalate_below, route, escalated):
    slm = Scripted(script=[answer("local", confidence)])
    llm = Scripted(script=[answer("remote")])
    p = policy(routes=routes(slm=slm, llm=llm), cascade=Cascade(first="slm", then="llm", escalate_below=escalate_below))
    d = RoutingDecision.from_message(RoutedChatModel(policy=p).invoke("a question"))
    assert (d.route, d.escalated) == (route, escalated)
    assert d.signal("confidence").value == confidence
    assert len(d.attempts) == 1 + escalated


def test_cascade_reads_openai_style_logprobs():
    msg = AIMessage("x", response_metadata={"logprobs": {"content": [{"logprob": -0.1}, {"logprob": -2.0}]}})
    request = RoutingRequest([HumanMessage("q")])
    assert LogprobConfidence(measure="min_prob").score(request, msg, Scripted()) == pytest.approx(0.1353, abs=1e-3)


def test_values_only_confidence_ignores_the_json_scaffold():
    tokens = [('{"', 0.01), ("label", 0.9), ('":', 0.8), (' "', 0.9), ("yes", 0.3), ('"}', 0.5)]
    content = [{"token": t, "logprob": math.log(p)} for t, p in tokens]
    msg = AIMessage('{"label": "yes"}', response_metadata={"logprobs": {"content": content}})
    request = RoutingRequest([HumanMessage("q")])
    assert LogprobConfidence(measure="min_prob").score(request, msg, Scripted()) == pytest.approx(0.01)
    assert LogprobConfidence(measure="min_prob", values_only=True).score(request, msg, Scripted()) == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("verdict", "expected"), [(answer("Yes", 0.8), 0.8), (answer("no", 0.9), 0.1), ("maybe", None)]
)
def test_self_check_confidence(verdict, expected):
    judge = Scripted(script=[verdict])
    score = SelfCheckConfidence(judge=judge).score(RoutingRequest([HumanMessage("q")]), AIMessage("a"), judge)
    assert score == (pytest.approx(expected) if expected is not None else None)


def test_cascade_does_not_escalate_private_data():
    slm = Scripted(script=[answer("local", 0.1)])
    p = policy(routes=routes(slm=slm, llm=[]), cascade=Cascade(first="slm", then="llm", escalate_below=0.5))
    d = RoutingDecision.from_message(RoutedChatModel(policy=p).invoke("Ada Lovelace asks"))
    assert (d.route, d.escalated, d.cascade) == ("slm", False, False)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ModelConnectionError("refused"), "connection"),
        (ModelTimeoutError("slow"), "timeout"),
        (ModelRateLimitError("429"), "rate_limit"),
        (ConnectionRefusedError("refused"), "connection"),
        (TimeoutError(), "timeout"),
    ],
)
def test_failed_route_falls_back_and_the_failure_is_recorded(error, kind):
    llm = Scripted(script=[error])
    routed = RoutedChatModel(policy=policy([Keywords(words=["prove"])], routes=routes(slm=["local"], llm=llm)))
    msg = routed.invoke("prove it")
    d = RoutingDecision.from_message(msg)
    assert (msg.content, d.route, d.planned_route) == ("local", "slm", "llm")
    assert [(a.route, a.ok, a.failure) for a in d.attempts] == [("llm", False, kind), ("slm", True, None)]
    assert routed.stats.report().fallbacks == 1


def test_explicit_fallback_chain_and_all_failing():
    failing = [ModelConnectionError("down")]
    p = policy(
        [Keywords(words=["prove"])],
        routes=routes(slm=[ModelConnectionError("down")], mid=list(failing), llm=list(failing)),
        fallbacks={"llm": ["mid", "slm"]},
    )
    with pytest.raises(RoutesFailedError, match=r"llm: ModelConnectionError: down; mid: .*; slm: "):
        RoutedChatModel(policy=p).invoke("prove it")


def test_other_errors_are_not_absorbed():
    p = policy([Keywords(words=["prove"])], routes=routes(slm=[], llm=[ValueError("bad request")]))
    with pytest.raises(ValueError, match="bad request"):
        RoutedChatModel(policy=p).invoke("prove it")
    assert classify_failure(ValueError()) is None


def test_pseudonymized_messages_reach_the_remote_and_the_answer_is_restored():
    llm = Scripted(script=[answer("Dear <PERSON_1>, I wrote to <EMAIL_1>.")])
    p = RoutingPolicy(
        routes=routes(slm=[], llm=llm),
        rules=[KeepLocalIfPII(detector=RegexPII(), pseudonymize=True), Keywords(words=["prove"])],
    )
    msg = RoutedChatModel(policy=p).invoke("prove it to Ada Lovelace, ada@example.com")
    sent = llm.seen[0][-1].content
    assert "Ada Lovelace" not in sent
    assert "ada@example.com" not in sent
    assert "<PERSON_1>" in sent
    assert "<EMAIL_1>" in sent
    assert msg.content == "Dear Ada Lovelace, I wrote to ada@example.com."
    assert RoutingDecision.from_message(msg).pseudonymized


def test_sticky_sessions_keep_a_conversation_on_its_route():
    p = policy([Keywords(words=["prove"]), Keywords(words=["urgent"], route="slm", force=True)])
    routed = RoutedChatModel(policy=p, sticky_sessions=True)
    first = [HumanMessage("prove the lemma")]
    assert RoutingDecision.from_message(routed.invoke(first)).route == "llm"
    follow_up = [*first, AIMessage("ok"), HumanMessage("and now say thanks")]
    d = RoutingDecision.from_message(routed.invoke(follow_up))
    assert d.route == "llm"
    assert "stays on 'llm'" in d.reason
    forced = RoutingDecision.from_message(routed.invoke([*follow_up, AIMessage("thanks"), HumanMessage("urgent!")]))
    assert forced.route == "slm"
    other = RoutingDecision.from_message(routed.invoke("a new conversation"))
    assert other.route == "slm"
    assert RoutingDecision.from_message(routed.invoke(follow_up, session_id="s1")).route == "slm"


def test_tools_pass_through_to_the_chosen_route():
    def get_weather(city: str) -> str:
        """Weather in a city."""
        return "sunny"

    llm = Scripted(script=[AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Oslo"}, "id": "1"}])])
    routed = RoutedChatModel(policy=policy([Keywords(words=["weather"])], routes=routes(slm=[], llm=llm)))
    msg = routed.bind_tools([get_weather], tool_choice="any").invoke("weather in Oslo?")
    assert msg.tool_calls[0]["args"] == {"city": "Oslo"}
    assert llm.seen_kwargs[0]["tools"][0]["function"]["name"] == "get_weather"
    assert llm.seen_kwargs[0]["tool_choice"] == "any"


class Person(BaseModel):
    name: str
    born: int


def test_structured_output_passes_through_to_the_chosen_route():
    slm = Scripted(
        script=[AIMessage("", tool_calls=[{"name": "Person", "args": {"name": "Ada", "born": 1815}, "id": "1"}])]
    )
    routed = RoutedChatModel(policy=policy(routes=routes(slm=slm, llm=[])))
    person = routed.with_structured_output(Person, method="function_calling").invoke("Ada Lovelace, born 1815")
    assert person == Person(name="Ada", born=1815)
    raw = routed.with_structured_output(Person, method="function_calling", include_raw=True)
    slm.script.append(AIMessage("", tool_calls=[{"name": "Person", "args": {"name": "Bo"}, "id": "2"}]))
    out = raw.invoke("Bo")
    assert out["parsed"] is None
    assert out["parsing_error"] is not None
    assert RoutingDecision.from_message(out["raw"]).route == "slm"


def test_streaming_falls_over_before_the_first_chunk_and_ends_with_the_decision():
    llm = Scripted(script=[ModelConnectionError("down")])
    routed = RoutedChatModel(policy=policy([Keywords(words=["prove"])], routes=routes(slm=["local answer"], llm=llm)))
    chunks = list(routed.stream("prove it"))
    full = functools.reduce(operator.add, chunks)
    assert full.content == "local answer"
    d = RoutingDecision.from_message(full)
    assert [(a.route, a.ok) for a in d.attempts] == [("llm", False), ("slm", True)]
    assert routed.stats.report().requests == 1


def test_streaming_a_cascade_sends_the_judged_answer_in_one_chunk():
    slm = Scripted(script=[answer("unsure", 0.1)])
    llm = Scripted(script=[answer("sure")])
    p = policy(routes=routes(slm=slm, llm=llm), cascade=Cascade(first="slm", then="llm"))
    chunks = list(RoutedChatModel(policy=p).stream("a question"))
    full = functools.reduce(operator.add, chunks)
    assert full.content == "sure"
    assert RoutingDecision.from_message(full).escalated


def test_decider_returns_the_decision_without_calling_a_model():
    llm = Scripted()
    routed = RoutedChatModel(policy=policy([Keywords(words=["prove"])], routes=routes(slm=[], llm=llm)))
    d = routed.as_decider().invoke("prove it")
    assert isinstance(d, RoutingDecision)
    assert d.route == "llm"
    assert not d.attempts
    assert llm.seen == []


def test_stats_add_up_shares_costs_and_savings():
    llm = Scripted(script=[answer("a", tokens=(1000, 1000))])
    slm = Scripted(script=[answer("b", tokens=(1000, 1000))] * 3)
    routed = RoutedChatModel(policy=policy([Keywords(words=["prove"])], routes=routes(slm=slm, llm=llm)))
    for text in ("prove it", "hi", "hello", "hey"):
        routed.invoke(text)
    report = routed.stats.report()
    assert report.requests == 4
    assert report.routes["slm"].share == 0.75
    assert report.routes["llm"].share == 0.25
    assert report.cost_usd == pytest.approx(10.0)
    assert report.reference_cost_usd > report.cost_usd
    assert report.saved_usd == pytest.approx(report.reference_cost_usd - report.cost_usd)


def test_session_budget_counts_per_conversation():
    llm = Scripted(script=[answer("a", tokens=(100, 100))] * 5)
    p = policy([Keywords(words=["prove"])], routes=routes(slm=[], llm=llm), budget=Budget(usd_per_session=3.0))
    routed = RoutedChatModel(policy=p)
    assert RoutingDecision.from_message(routed.invoke("prove a", session_id="s")).route == "llm"
    assert RoutingDecision.from_message(routed.invoke("prove b", session_id="s")).route == "slm"
    assert RoutingDecision.from_message(routed.invoke("prove c", session_id="t")).route == "llm"


def test_validation_errors_are_pydantic_errors_with_the_message():
    with pytest.raises(ValidationError, match="default names route"):
        policy(default="nope")
