"""Assistant, offline: a bag-of-words fake embedder with real Chroma and BM25 in ``tmp_path``, and a scripted fake
chat model behind a real ``RoutedChatModel``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import Runnable, RunnableLambda
from pydantic import PrivateAttr

from slmkit.agent import Answer, AnswerEvent, Assistant, AssistantConfig, TokenEvent
from slmkit.agent.decline import DeclineRule
from slmkit.core.errors import GuardBlockedError, KnowledgeBaseError
from slmkit.guards import Guard, GuardCall
from slmkit.retrieval import KnowledgeBase, KnowledgeBaseConfig
from slmkit.retrieval.testing import BagOfWordsEmbedding, write_pdf
from slmkit.routing import Route, RoutedChatModel, RoutingPolicy

DOCS = {
    "vacation.md": "# Vacation\n\nEvery employee has 28 paid vacation days per year. Unused days expire in March.\n",
    "battery.txt": "The battery stores 13.5 kWh of energy. The battery weighs 118 kg and hangs on a wall.",
}


@pytest.fixture(scope="module")
def kb(tmp_path_factory) -> KnowledgeBase:
    root = tmp_path_factory.mktemp("assistant")
    docs = root / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    write_pdf(docs / "laptops.pdf", [["Cover page"], ["A lost laptop must be reported within 2 hours."]])
    base = KnowledgeBase(
        name="office",
        path=root / "kb",
        embedding=BagOfWordsEmbedding(),
        config=KnowledgeBaseConfig(chunk_size=64, chunk_overlap=0),
    )
    base.ingest([docs], show_progress=False)
    return base


class Scripted(GenericFakeChatModel):
    """Replies in order and records every prompt it was sent."""

    _seen: list[list[BaseMessage]] = PrivateAttr(default_factory=list)

    @property
    def seen(self) -> list[list[BaseMessage]]:
        return self._seen

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> Any:
        self._seen.append(list(messages))  # GenericFakeChatModel streams through _generate too
        return super()._generate(messages, stop, run_manager, **kwargs)


def scripted(*replies: str) -> Scripted:
    return Scripted(messages=iter([AIMessage(r) for r in replies]))


def routed(model: Scripted) -> RoutedChatModel:
    return RoutedChatModel(policy=RoutingPolicy(routes={"local": Route(model=model, local=True)}))


def assistant(kb: KnowledgeBase, *replies: str, guards: list[Guard] | None = None, **config: Any) -> Assistant:
    model = scripted(*replies)
    return Assistant(kb, model=routed(model), guards=guards or [], config=AssistantConfig(**config))


def spy(a: Assistant) -> Scripted:
    model = a.model.policy.routes["local"].model  # type: ignore[attr-defined]
    assert isinstance(model, Scripted)
    return model


def last_prompt(a: Assistant) -> str:
    return "\n".join(str(m.content) for m in spy(a).seen[-1])


# -- answers and citations ----------------------------------------------------------------------------------------
def test_answer_cites_the_passage_that_supports_it_with_source_and_page(kb):
    a = assistant(kb, "A lost laptop must be reported within 2 hours.")
    answer = a.ask("How quickly must a lost laptop be reported?")
    assert answer.text == "A lost laptop must be reported within 2 hours [1]."
    assert len(answer.citations) == 1
    cited = answer.citations[0]
    assert (Path(cited.source).name, cited.page, cited.marker) == ("laptops.pdf", 2, 1)
    assert cited.chunk_id
    assert "2 hours" in cited.snippet
    assert answer.abstained is False
    assert "Sources:\n[1] A lost laptop must be reported within 2 hours." in last_prompt(a)


def position_of(kb: KnowledgeBase, query: str, name: str) -> int:
    """Where the passage from file ``name`` stands among the sources the model is shown (1-based)."""
    docs = assistant(kb, "x", min_relevance=None).retriever.invoke(query)
    return next(i for i, d in enumerate(docs, 1) if Path(d.metadata["source"]).name == name)


def test_a_wrong_marker_from_the_model_is_replaced_by_the_supporting_passage(kb):
    question = "How many vacation days does an employee have?"
    right = position_of(kb, question, "vacation.md")
    wrong = 1 if right != 1 else 2
    a = assistant(kb, f"Every employee has 28 paid vacation days per year [{wrong}][9].", min_relevance=None)
    answer = a.ask(question)
    assert answer.text == f"Every employee has 28 paid vacation days per year [{right}]."
    assert [(c.marker, Path(c.source).name) for c in answer.citations] == [(right, "vacation.md")]


def test_a_valid_marker_from_the_model_is_kept(kb):
    position = position_of(kb, "battery weighs kg", "battery.txt")
    a = assistant(kb, f"The battery weighs 118 kg [{position}].", min_relevance=None)
    answer = a.ask("battery weighs kg")
    assert answer.text == f"The battery weighs 118 kg [{position}]."
    assert [c.marker for c in answer.citations] == [position]


def test_an_unsupported_answer_cites_nothing(kb):
    answer = assistant(kb, "Penguins live in Antarctica and eat fish.").ask("How many vacation days?")
    assert answer.citations == []
    assert "[" not in answer.text


@pytest.mark.parametrize("reply", ["[1] [2] [3]", " [1]. "])
def test_an_answer_without_words_says_so_instead_of_being_empty(kb, reply):
    answer = assistant(kb, reply).ask("How many vacation days does an employee have?")
    assert answer.text == AssistantConfig().no_answer_message
    assert answer.citations == []
    assert answer.abstained is False


def test_routing_decision_and_timings_are_in_the_answer(kb):
    answer = assistant(kb, "The battery stores 13.5 kWh of energy.").ask("How much energy does the battery store?")
    assert answer.routing is not None
    assert answer.routing.route == "local"
    assert answer.routing.reason
    for key in ("retrieve_ms", "first_token_ms", "generate_ms", "total_ms"):
        assert answer.timings[key] >= 0
    assert answer.timings["first_token_ms"] <= answer.timings["total_ms"]
    assert answer.query == "How much energy does the battery store?"


def test_nothing_relevant_means_abstaining_without_calling_the_model(kb):
    a = assistant(kb, "Paris is the capital of France.")
    answer = a.ask("quantum chromodynamics gluon confinement")
    assert answer.abstained is True
    assert answer.citations == []
    assert answer.text == AssistantConfig().abstain_message
    assert answer.routing is None
    assert spy(a).seen == []


def test_the_refusal_phrase_counts_as_abstaining_and_offers_the_closest_passages(kb):
    question = "How much energy does the battery store?"
    answer = assistant(kb, "The documents do not say.").ask(question)
    assert answer.abstained is True
    assert answer.text == AssistantConfig().decline_message.format(query=question)
    assert question in answer.text
    assert Path(answer.citations[0].source).name == "battery.txt"
    assert answer.signals["refused"] == 1.0


def test_a_decline_rule_turns_an_unsupported_answer_into_a_decline(kb):
    rule = DeclineRule(weights={"answer_support": 10.0}, bias=-5.0, threshold=0.5)
    question = "How much energy does the battery store?"
    invented = assistant(kb, "It stores hydrogen in vanadium flasks.", decline=rule).ask(question)
    assert invented.abstained is True
    assert invented.signals["answer_score"] < 0.5
    grounded = assistant(kb, "The battery stores 13.5 kWh of energy.", decline=rule).ask(question)
    assert grounded.abstained is False
    assert grounded.signals["answer_score"] > 0.5
    assert "13.5 kWh" in grounded.text


def test_a_missing_knowledge_base_is_a_clear_error(tmp_path):
    empty = KnowledgeBase(name="nothing-here", path=tmp_path, embedding=BagOfWordsEmbedding())
    with pytest.raises(KnowledgeBaseError, match="slmkit ingest PATH --kb nothing-here"):
        assistant(empty, "x").ask("anything")


# -- streaming ----------------------------------------------------------------------------------------------------
def test_stream_yields_tokens_then_one_answer_event(kb):
    reply = "The battery weighs 118 kg."
    events = list(assistant(kb, reply).stream("How much does the battery weigh?"))
    assert all(isinstance(e, TokenEvent) for e in events[:-1])
    assert len(events) > 2
    assert isinstance(events[-1], AnswerEvent)
    assert "".join(e.text for e in events[:-1]) == reply
    assert events[-1].answer.text.startswith("The battery weighs 118 kg [")


def test_answers_stop_after_max_sentences(kb):
    reply = "The battery weighs 118 kg. It hangs on a wall. It also sings opera."
    events = list(assistant(kb, reply, max_sentences=2).stream("How much does the battery weigh?"))
    shown = "".join(e.text for e in events if isinstance(e, TokenEvent))
    assert shown == "The battery weighs 118 kg. It hangs on a wall."
    assert "opera" not in events[-1].answer.text  # type: ignore[union-attr]


async def test_astream_and_ainvoke(kb):
    events = [e async for e in assistant(kb, "The battery weighs 118 kg.").astream("battery weight")]
    assert isinstance(events[0], TokenEvent)
    assert isinstance(events[-1], AnswerEvent)
    answer = await assistant(kb, "The battery weighs 118 kg.").ainvoke("battery weight")
    assert isinstance(answer, Answer)
    assert answer.text.startswith("The battery weighs 118 kg")


# -- a LangChain Runnable -----------------------------------------------------------------------------------------
def test_is_a_runnable_that_passes_the_answer_down_a_chain(kb):
    a = assistant(kb, "The battery weighs 118 kg.", "The battery weighs 118 kg.")
    assert isinstance(a, Runnable)
    chain = a | RunnableLambda(lambda answer: answer.citations[0].source)
    assert Path(chain.invoke("battery weight")).name == "battery.txt"
    streamed = list(chain.stream("battery weight"))
    assert [Path(s).name for s in streamed] == ["battery.txt"]


def test_invoke_takes_a_question_or_a_dict_with_history(kb):
    a = assistant(kb, "The battery weighs 118 kg.")
    history = [HumanMessage("Tell me about the battery."), AIMessage("It stores energy.")]
    answer = a.invoke({"question": "How much does the battery weigh?", "history": history})
    assert answer.text.startswith("The battery weighs")
    assert "It stores energy." in last_prompt(a)  # the last turn is shown to the model
    with pytest.raises(TypeError, match="question"):
        a.invoke(42)  # type: ignore[arg-type]


# -- chat: memory and follow-ups ----------------------------------------------------------------------------------
def test_chat_rewrites_a_follow_up_before_retrieval(kb):
    a = assistant(
        kb,
        "Every employee has 28 paid vacation days per year.",
        "Do unused vacation days expire?",  # the rewrite
        "Unused days expire in March.",
    )
    first = a.chat("How many vacation days does an employee have?")
    assert first.query == "How many vacation days does an employee have?"
    second = a.chat("Do they expire?")
    assert second.query == "Do unused vacation days expire?"
    assert Path(second.citations[0].source).name == "vacation.md"
    assert len(a.memory) == 2
    a.reset()
    assert len(a.memory) == 0


def test_a_bad_rewrite_falls_back_to_the_previous_question_and_the_follow_up(kb):
    a = assistant(kb, "Every employee has 28 paid vacation days per year.", "The answer is: No", "Yes.")
    a.chat("How many vacation days does an employee have?")
    answer = a.chat("Do they expire?")
    assert answer.query == "How many vacation days does an employee have? Do they expire?"


def test_a_standalone_question_in_a_chat_is_not_rewritten(kb):
    a = assistant(kb, "Every employee has 28 paid vacation days per year.", "The battery weighs 118 kg.")
    a.chat("How many vacation days does an employee have?")
    answer = a.chat("How much does the battery weigh in kilograms?")
    assert answer.query == "How much does the battery weigh in kilograms?"
    assert len(spy(a).seen) == 2  # two answers, no rewrite call


# -- guards -------------------------------------------------------------------------------------------------------
class Shout(Guard):
    """Upper-cases the question, and marks the answer; records what it saw."""

    name = "shout"

    def check_input(self, text: str, call: GuardCall) -> str:
        return text.upper()

    def check_output(self, text: str, call: GuardCall) -> str:
        assert call.context, "output guards get the excerpts the model saw"
        return text + " (checked)"


class Refuse(Guard):
    name = "refuse"

    def check_input(self, text: str, call: GuardCall) -> str:
        raise GuardBlockedError("no questions today")


def test_guards_see_the_question_and_the_answer_and_report(kb):
    a = assistant(kb, "The battery weighs 118 kg.", guards=[Shout()])
    answer = a.ask("How much does the battery weigh?")
    assert "HOW MUCH DOES THE BATTERY WEIGH?" in last_prompt(a)
    assert answer.text.endswith("(checked)")
    assert answer.guard_report is not None


def test_a_blocking_guard_stops_the_question_before_any_model_call(kb):
    a = assistant(kb, "never", guards=[Refuse()])
    with pytest.raises(GuardBlockedError):
        a.ask("How much does the battery weigh?")
    assert spy(a).seen == []


def test_without_guards_there_is_no_report(kb):
    assert assistant(kb, "The battery weighs 118 kg.").ask("battery weight").guard_report is None


# -- configuration ------------------------------------------------------------------------------------------------
def test_config_round_trips_and_rejects_typos():
    config = AssistantConfig(k=2, remote={"base_url": "http://127.0.0.1:9/v1", "model": "big"})
    assert AssistantConfig.model_validate(config.model_dump()) == config
    with pytest.raises(ValueError, match="passages"):
        AssistantConfig(passages=3)  # type: ignore[call-arg]


def test_default_router_with_a_remote_route_keeps_pii_local_and_sends_long_prompts_out():
    from slmkit.agent.assistant import default_router
    from slmkit.routing import KeepLocalIfPII, PreferLargeIfLong

    config = AssistantConfig(remote={"base_url": "http://127.0.0.1:9/v1", "model": "big", "long_prompt_tokens": 900})
    model = default_router(config)
    assert isinstance(model, RoutedChatModel)
    policy = model.policy
    assert set(policy.routes) == {"local", "remote"}
    assert policy.routes["local"].local
    assert not policy.routes["remote"].local
    assert any(isinstance(r, KeepLocalIfPII) for r in policy.rules)
    assert [r.tokens for r in policy.rules if isinstance(r, PreferLargeIfLong)] == [900]
    assert policy.default_route == "local"
    assert set(default_router(AssistantConfig()).policy.routes) == {"local"}  # type: ignore[attr-defined]


def test_the_remote_route_keeps_the_same_personal_data_local_as_the_routers_privacy_rule():
    from slmkit.guards.pii import PERSONAL_DATA

    remote = AssistantConfig(remote={"base_url": "http://127.0.0.1:9/v1", "model": "big"}).remote
    assert remote is not None
    assert remote.private_entities == list(PERSONAL_DATA)
    assert "STREET_ADDRESS" in remote.private_entities


class Loadable(Scripted):
    """A scripted model that, like ChatLocalSLM, can be loaded ahead of use."""

    _loads: list[str] = PrivateAttr(default_factory=list)

    def load(self) -> None:
        self._loads.append("loaded")
        if self.name == "broken":
            raise RuntimeError("corrupt GGUF")


def test_preload_loads_every_local_route_in_the_background_and_keeps_failures_for_first_use(kb):
    first, second, broken = Loadable(messages=iter([])), Loadable(messages=iter([])), Loadable(messages=iter([]))
    broken.name = "broken"
    policy = RoutingPolicy(
        routes={
            "local": Route(model=first, local=True),
            "broken": Route(model=broken, local=True),
            "remote": Route(model=second),
        }
    )
    a = Assistant(kb, model=RoutedChatModel(policy=policy), guards=[])
    assert a.local_models() == [first, broken, second]
    thread = a.preload()
    thread.join(10)
    assert not thread.is_alive()
    assert [m._loads for m in (first, broken, second)] == [["loaded"]] * 3  # a failure does not stop the others
    assert Assistant(kb, model=scripted("x"), guards=[]).local_models() == []
