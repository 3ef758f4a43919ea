"""The assistant end to end on the example documents: packaged SmolLM2-135M, MiniLM, Chroma, Presidio, and a real
llama.cpp server as the remote route."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage

from slmkit.agent import AnswerEvent, Assistant, AssistantConfig, TokenEvent, resolve_model_path
from slmkit.retrieval import KnowledgeBase
from slmkit.routing import LlamaServer

pytestmark = [pytest.mark.model, pytest.mark.timeout(900)]
DOCS = Path(__file__).resolve().parents[2] / "examples" / "docs"


@pytest.fixture(scope="module")
def kb(tmp_path_factory) -> KnowledgeBase:
    base = KnowledgeBase(name="lumen", path=tmp_path_factory.mktemp("kb"))
    report = base.ingest([DOCS], show_progress=False)
    assert len(report.added) == 3
    return base


@pytest.fixture(scope="module")
def assistant(kb) -> Assistant:
    return Assistant(kb)


def name(path: str) -> str:
    return Path(path).name


def test_answers_from_the_pdf_with_a_page_citation_a_route_and_a_guard_report(assistant):
    answer = assistant.ask("How quickly must a lost laptop be reported?")
    assert "2 hours" in answer.text
    assert [(name(c.source), c.page, c.marker) for c in answer.citations][:1] == [("security-policy.pdf", 1, 1)]
    assert f"[{answer.citations[0].marker}]" in answer.text
    assert answer.routing is not None
    assert answer.routing.route == "local"
    assert answer.guard_report is not None
    assert answer.guard_report.grounding is not None
    assert answer.guard_report.grounding.verdict in ("supported", "partially_supported", "unsupported")
    assert 0 < answer.timings["first_token_ms"] <= answer.timings["total_ms"]
    assert not answer.abstained


class Prompts(BaseCallbackHandler):
    """Records the messages each chat model is called with."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def on_chat_model_start(self, serialized: Any, messages: list[list[BaseMessage]], **kwargs: Any) -> None:
        self.seen.extend(str(m.content) for batch in messages for m in batch)


def test_a_statement_is_checked_as_a_question_and_cites_its_source(assistant):
    prompts = Prompts()
    answer = assistant.invoke("A lost laptop must be reported within 2 hours.", config={"callbacks": [prompts]})
    assert any("Is it true that a lost laptop must be reported within 2 hours?" in content for content in prompts.seen)
    assert not answer.abstained
    assert [name(c.source) for c in answer.citations][:1] == ["security-policy.pdf"]


def test_says_so_when_the_documents_do_not_cover_the_question(assistant):
    answer = assistant.ask("What is the capital of France?")
    assert answer.abstained
    assert answer.citations == []
    assert answer.routing is None  # no model was asked
    assert "Paris" not in answer.text


def test_stream_yields_tokens_then_the_checked_answer(assistant):
    events = list(assistant.stream("What does error code E42 mean?"))
    tokens = [e for e in events if isinstance(e, TokenEvent)]
    assert len(tokens) > 3
    assert isinstance(events[-1], AnswerEvent)
    assert sum(isinstance(e, AnswerEvent) for e in events) == 1
    answer = events[-1].answer
    assert "grid meter" in answer.text
    assert [name(c.source) for c in answer.citations] == ["product-faq.txt"]
    assert answer.text.startswith("".join(e.text for e in tokens).split(".")[0])


def test_pii_in_the_question_is_found_and_reported(assistant):
    answer = assistant.ask("What is the phone number of Dana Whitfield?")
    assert answer.guard_report is not None
    found = {f.entity_type for f in answer.guard_report.findings.get("input", [])}
    assert "PERSON" in found
    assert all(name(c.source) == "handbook.md" for c in answer.citations)


def test_chat_follow_up_keeps_the_subject(kb):
    chat = Assistant(kb)
    first = chat.chat("How long is the GridBox 3 warranty?")
    assert [name(c.source) for c in first.citations] == ["product-faq.txt"]
    follow_up = chat.chat("How much does it weigh?")
    assert "gridbox" in follow_up.query.lower()  # rewritten, or the previous question joined
    assert follow_up.query != "How much does it weigh?"
    assert all(name(c.source) == "product-faq.txt" for c in follow_up.citations)
    assert len(chat.memory) == 2


async def test_astream_streams_on_the_event_loop(assistant):
    events = [e async for e in assistant.astream("What does error code E42 mean?")]
    assert isinstance(events[0], TokenEvent)
    assert isinstance(events[-1], AnswerEvent)


@pytest.fixture(scope="module")
def server():
    with LlamaServer(resolve_model_path("smollm2-135m-instruct"), n_ctx=2048, n_threads=2) as running:
        yield running


def test_remote_route_from_config_answers_long_prompts_and_pii_stays_local(kb, server):
    config = AssistantConfig(
        remote={"base_url": server.base_url, "model": server.alias, "long_prompt_tokens": 10, "timeout_s": 240}
    )
    routed = Assistant(kb, config=config)
    answer = routed.ask("How long is the GridBox 3 warranty?")
    assert answer.routing is not None
    assert (answer.routing.route, answer.routing.rule) == ("remote", "PreferLargeIfLong")
    assert answer.text
    private = routed.ask("What is the email address of Dana Whitfield?")
    assert private.routing is not None
    assert private.routing.route == "local"
    assert "stays local" in private.routing.reason


def test_a_cascade_sends_unsure_answers_to_the_real_server_with_the_remote_profile(kb, server):
    # escalate_below=1.0: every answer the local model gives is "unsure", so each goes to the server
    remote = {"base_url": server.base_url, "model": server.alias, "escalate_below": 1.0, "timeout_s": 240}
    cascade = Assistant(kb, guards=[], config=AssistantConfig(remote=remote))
    assert cascade.remote_assistant is not None
    assert cascade.remote_assistant.config.group_by_source is False  # the remote profile: whole passages
    answer = cascade.ask("How long is the GridBox 3 warranty?")
    assert answer.routing is not None
    assert (answer.routing.route, answer.routing.escalated) == ("remote", True)
    assert "answer_score" in answer.routing.reason
    assert answer.text
    assert answer.timings["total_ms"] > answer.timings["local_ms"] > 0
    declined = cascade.ask("Who painted the ceiling of the Sistine Chapel?")  # nothing relevant: no model asked
    assert declined.abstained
    assert declined.routing is None or not declined.routing.escalated


def test_a_cascade_whose_server_is_down_keeps_the_local_answer_and_says_why(kb):
    from slmkit.routing.server import free_port

    question = "How long is the GridBox 3 warranty?"
    url = f"http://127.0.0.1:{free_port()}/v1"
    remote = {"base_url": url, "model": "gone", "escalate_below": 1.0}
    answer = Assistant(kb, guards=[], config=AssistantConfig(remote=remote)).ask(question)
    assert answer.routing is not None
    assert answer.routing.route == "local"
    assert "escalation failed (OpenAIConnectionError" in answer.routing.reason
    assert url in answer.routing.reason
    assert answer.text == Assistant(kb, guards=[]).ask(question).text  # the local model's own answer


def test_a_qwen_profile_reads_whole_passages_answers_in_words_and_declines_what_the_documents_lack(kb):
    qwen = Assistant(kb, guards=[], config=AssistantConfig(model="qwen2.5-coder-0.5b-instruct"))
    assert qwen.config.group_by_source is False  # the profile, not the 135M model's settings
    answer = qwen.ask("How long is the GridBox 3 warranty?")
    assert "10-year" in answer.text
    assert not answer.abstained
    assert answer.citations
    assert "10-year warranty" in answer.citations[0].snippet
    assert {"top_relevance", "question_coverage", "answer_support", "min_prob"} <= set(answer.signals)
    declined = qwen.ask("Who painted the ceiling of the Sistine Chapel?")
    assert declined.abstained
    assert "Michelangelo" not in declined.text


@pytest.mark.xfail(
    reason="known defect: Qwen2.5-Coder-0.5B's profile says 'The documents do not say.' although the security "
    "policy excerpt holds the 2-hour rule (it over-declines: false-decline 0.20 on SQuAD, benchmarks/RESULTS.md)",
    strict=True,
)
def test_the_qwen_profile_answers_the_lost_laptop_question(kb):
    qwen = Assistant(kb, guards=[], config=AssistantConfig(model="qwen2.5-coder-0.5b-instruct"))
    assert "2 hours" in qwen.ask("How quickly must a lost laptop be reported?").text


def test_the_default_guards_report_pii_that_the_answer_repeats_from_the_documents(tmp_path):
    """Real Presidio and MiniLM; the model is scripted so that the answer surely repeats the e-mail address."""
    from langchain_core.language_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "contacts.md").write_text("# Contacts\n\nSecurity incidents go to maria.keller@lumen.example at once.\n")
    base = KnowledgeBase(name="contacts", path=tmp_path / "kb")
    base.ingest([docs], show_progress=False)
    model = GenericFakeChatModel(messages=iter([AIMessage("Write to maria.keller@lumen.example at once.")]))
    answer = Assistant(base, model=model).ask("Where do security incidents go?")
    assert "maria.keller@lumen.example" in answer.text  # reported, not redacted
    assert answer.guard_report is not None
    output = answer.guard_report.findings["output"]
    assert [f.entity_type for f in output] == ["EMAIL_ADDRESS"]
    assert answer.text[output[0].start : output[0].end] == "maria.keller@lumen.example"
