"""Routing with real parts: the packaged MiniLM embedder, Presidio through slmkit.guards, and the local SLM."""

from __future__ import annotations

import pytest
from langchain_core.language_models import FakeListChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from slmkit.agent import ChatLocalSLM
from slmkit.routing import (
    Cascade,
    KeepLocalIfPII,
    Keywords,
    Learned,
    LearnedRouter,
    LogprobConfidence,
    Route,
    RoutedChatModel,
    RoutingDecision,
    RoutingPolicy,
    Semantic,
)

# A small labelled set written for this test (label 1 = the strong route was needed), so it needs no data files.
EASY = [f"What colour is a {thing}?" for thing in ("banana", "lemon", "cherry", "crow", "swan", "frog", "cloud")] + [
    f"Say hello to {name}." for name in ("Ana", "Bo", "Cy", "Di", "Ed", "Flo", "Gus")
]
HARD = [
    f"Prove that the {thing} is {claim}, step by step, with every lemma stated."
    for thing, claim in (
        ("sum of two odd integers", "even"),
        ("square root of 2", "irrational"),
        ("set of primes", "infinite"),
        ("harmonic series", "divergent"),
        ("product of two consecutive integers", "even"),
        ("composition of two bijections", "a bijection"),
        ("intersection of two subgroups", "a subgroup"),
    )
] + [
    f"Derive the closed form of the {thing} and analyse its asymptotic complexity."
    for thing in (
        "Fibonacci recurrence",
        "binary search cost",
        "merge sort cost",
        "Catalan numbers",
        "Tower of Hanoi",
        "quicksort average case",
        "Ackermann growth",
    )
]


class Recorder(FakeListChatModel):
    """A remote stand-in that keeps what it was sent."""

    sent: list[list[BaseMessage]] = Field(default_factory=list)

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.sent.append(list(messages))
        return ChatResult(generations=[ChatGeneration(message=AIMessage("Noted, <PERSON_1>."))])


def two_routes(remote=None, local=None) -> dict[str, Route]:
    return {
        "slm": Route(model=local or FakeListChatModel(responses=["local"]), local=True),
        "llm": Route(model=remote or FakeListChatModel(responses=["remote"]), output_usd_per_1k=0.01),
    }


def test_semantic_rule_with_the_packaged_embedder():
    rule = Semantic(
        utterances={
            "code": ["write a python function that sorts a list", "fix this stack trace", "refactor this class"],
            "chitchat": ["hi, how are you?", "thanks, that's all", "good morning!"],
        },
        to={"code": "llm", "chitchat": "slm"},
    )
    routed = RoutedChatModel(policy=RoutingPolicy(routes=two_routes(), rules=[rule]))
    code = RoutingDecision.from_message(routed.invoke("Can you write a Python function to reverse a string?"))
    chat = RoutingDecision.from_message(routed.invoke("hello, how's it going?"))
    assert (code.route, chat.route) == ("llm", "slm")
    assert code.signal("semantic").value >= 0.3


def test_learned_router_defaults_train_and_score_offline():
    prompts = EASY + HARD
    labels = [0] * len(EASY) + [1] * len(HARD)
    router = LearnedRouter().fit(prompts, labels, target_share=0.3)
    scores = router.scores(prompts[:20])
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert sum(router.scores(HARD)) / len(HARD) > sum(router.scores(EASY)) / len(EASY)
    assert 0.0 <= router.score("What is 2 + 2?") <= 1.0
    policy = RoutingPolicy(routes=two_routes(), rules=[Learned(router=router)])
    decision = RoutedChatModel(policy=policy).decide(prompts[0])
    assert decision.signal("learned").value == pytest.approx(router.score(prompts[0]), abs=1e-4)


def test_private_data_is_detected_with_presidio_and_kept_local():
    routed = RoutedChatModel(policy=RoutingPolicy(routes=two_routes(), rules=[Keywords(words=["letter"])]))
    decision = RoutingDecision.from_message(routed.invoke("Write a letter to Ada Lovelace at ada@example.com"))
    assert decision.route == "slm"
    assert "EMAIL_ADDRESS" in decision.signal("pii").detail


def test_pseudonymized_request_reaches_the_remote_without_the_private_values():
    remote = Recorder(responses=["unused"])
    policy = RoutingPolicy(
        routes=two_routes(remote=remote), rules=[KeepLocalIfPII(pseudonymize=True), Keywords(words=["letter"])]
    )
    message = RoutedChatModel(policy=policy).invoke("Write a letter to Ada Lovelace, please.")
    sent = remote.sent[-1][-1].content
    assert "Ada Lovelace" not in sent
    assert "<PERSON_1>" in sent
    assert message.content == "Noted, Ada Lovelace."


@pytest.mark.model
def test_cascade_with_the_local_slm_reads_its_token_confidence():
    slm = ChatLocalSLM(temperature=0, max_tokens=12, seed=1)
    llm = FakeListChatModel(responses=["remote answer"])
    cascade = Cascade(first="slm", then="llm", escalate_below=0.99, confidence=LogprobConfidence(measure="min_prob"))
    routed = RoutedChatModel(policy=RoutingPolicy(routes=two_routes(remote=llm, local=slm), cascade=cascade))
    decision = RoutingDecision.from_message(routed.invoke("Name a colour."))
    confidence = decision.signal("confidence")
    assert confidence is not None
    assert 0.0 < confidence.value < 1.0
    assert decision.escalated == (confidence.value < 0.99)
    assert decision.attempts[0].route == "slm"
    assert decision.attempts[0].exact_tokens
