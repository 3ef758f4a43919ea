"""``Guarded`` and ``GuardMiddleware`` mechanics with fakes: no Presidio, no embedder, no model."""

from __future__ import annotations

import re
from typing import ClassVar

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from slmkit.core.errors import GuardBlockedError
from slmkit.guards import GroundingGuard, Guard, GuardCall, Guarded, GuardReport

NAMES = ("Ada Lovelace", "Alan Turing")


class NamePseudonymizer(Guard):
    """A PII guard stand-in: pseudonymizes two known names, blocks the word "SECRET"."""

    name = "pii"

    def check_input(self, text: str, call: GuardCall) -> str:
        if "SECRET" in text:
            raise GuardBlockedError("blocked")
        for value in NAMES:
            if value in text:
                text = text.replace(value, call.vault.placeholder("PERSON", value))
        return text

    def check_output(self, text: str, call: GuardCall) -> str:
        return call.vault.restore(text)

    def stream_output(self, call: GuardCall):
        return call.vault.restorer()


class SpyModel(GenericFakeChatModel):
    """Records every prompt it receives (the "remote" model must never see a real name)."""

    seen: ClassVar[list] = []

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.seen.append(messages)
        return super()._generate(messages, stop, run_manager, **kwargs)

    def _stream(self, messages, stop=None, run_manager=None, **kwargs):
        self.seen.append(messages)
        yield from super()._stream(messages, stop, run_manager, **kwargs)


def spy(*replies: str) -> SpyModel:
    return SpyModel(messages=iter([AIMessage(r) for r in replies]), seen=[])


def prompt_texts(model: SpyModel) -> str:
    return " ".join(str(m.content) for prompt in model.seen for m in prompt)


def test_round_trip_restores_values_and_model_never_sees_them():
    model = spy("Dear <PERSON_1>, <PERSON_2> says hi to <PERSON_1>.")
    guarded = Guarded(model, guards=[NamePseudonymizer()])
    out = guarded.invoke([SystemMessage("Be brief."), HumanMessage("Write from Alan Turing to Ada Lovelace.")])
    assert out.content == "Dear Ada Lovelace, Alan Turing says hi to Ada Lovelace."
    assert not any(name in prompt_texts(model) for name in NAMES)
    assert "<PERSON_1>" in prompt_texts(model)
    report = out.response_metadata["guard_report"]
    assert isinstance(report, GuardReport)


def test_chain_input_dict_and_string_output():
    model = spy("Hello <PERSON_1>")
    chain = ChatPromptTemplate.from_messages([("human", "Greet {name}")]) | model | StrOutputParser()
    guarded = Guarded(chain, guards=[NamePseudonymizer()])
    assert guarded.invoke({"name": "Ada Lovelace"}) == "Hello Ada Lovelace"
    assert "Ada" not in prompt_texts(model)


@pytest.mark.parametrize("chunk_size", [1, 3, 8])
def test_stream_restores_placeholders_split_across_chunks(chunk_size):
    reply = "Hi <PERSON_1> and <PERSON_2>!"
    model = spy(reply)
    guarded = Guarded(model, guards=[NamePseudonymizer()])
    # GenericFakeChatModel streams word by word; re-chunk to split placeholders at every position.
    chunks = list(guarded.stream("Ada Lovelace meets Alan Turing"))
    text = "".join(str(c.content) for c in chunks)
    assert text == "Hi Ada Lovelace and Alan Turing!"
    assert isinstance(chunks[-1].response_metadata["guard_report"], GuardReport)
    assert "<" not in text


async def test_async_invoke_and_stream():
    guarded = Guarded(spy("Bye <PERSON_1>", "Bye <PERSON_1>"), guards=[NamePseudonymizer()])
    assert (await guarded.ainvoke("Ada Lovelace left")).content == "Bye Ada Lovelace"
    chunks = [c async for c in guarded.astream("Ada Lovelace left")]
    assert "".join(str(c.content) for c in chunks) == "Bye Ada Lovelace"


def test_block_raises_with_report():
    guarded = Guarded(spy("never"), guards=[NamePseudonymizer()])
    with pytest.raises(GuardBlockedError) as info:
        guarded.invoke("the SECRET plan")
    assert isinstance(info.value.report, GuardReport)


def test_vault_is_per_thread():
    model = spy("<PERSON_1>", "<PERSON_1>")
    guarded = Guarded(model, guards=[NamePseudonymizer()])
    a = guarded.invoke("Alan Turing", {"configurable": {"thread_id": "a"}})
    b = guarded.invoke("Ada Lovelace", {"configurable": {"thread_id": "b"}})
    assert (a.content, b.content) == ("Alan Turing", "Ada Lovelace")


def test_grounding_from_chain_input_context():
    context = ["The Eiffel Tower is 330 metres tall and stands in Paris."]
    model = spy("The Eiffel Tower is 330 metres tall. It was painted gold by Napoleon in 1750.")
    grounding = GroundingGuard(embeddings=DeterministicFakeEmbedding(size=32), action="drop")
    chain = ChatPromptTemplate.from_messages([("human", "{context}\n\n{question}")]) | model
    out = Guarded(chain, output_guards=[grounding]).invoke({"context": context, "question": "How tall is it?"})
    assert out.content == "The Eiffel Tower is 330 metres tall."
    result = out.response_metadata["guard_report"].grounding
    assert [s.supported for s in result.sentences] == [True, False]


def test_middleware_guards_model_calls():
    from langchain.agents import create_agent

    from slmkit.guards import GuardMiddleware

    model = spy("Hello <PERSON_1>.")
    agent = create_agent(model, tools=[], middleware=[GuardMiddleware(guards=[NamePseudonymizer()])])
    result = agent.invoke({"messages": [HumanMessage("I am Ada Lovelace.")]})
    final = result["messages"][-1]
    assert final.content == "Hello Ada Lovelace."
    assert result["messages"][0].content == "I am Ada Lovelace."  # the state keeps real values
    assert "Ada" not in prompt_texts(model)
    assert isinstance(final.response_metadata["guard_report"], GuardReport)


def test_report_never_holds_values():
    guarded = Guarded(spy("ok"), guards=[NamePseudonymizer()])
    report = guarded.invoke("Ada Lovelace").response_metadata["guard_report"]
    assert not re.search("Ada|Lovelace", report.model_dump_json())
