"""The supervisor on real models: SmolLM2-135M in-process plans and calls tools under a grammar; the docs agent is
the real Assistant over examples/docs (Chroma, MiniLM); the "remote" LLM is llama-cpp-python's OpenAI-compatible
server (Qwen2.5-Coder-0.5B) on 127.0.0.1, reached over HTTP. Every HTTP request body sent to it is recorded, to check
that no PII leaves the process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.tools import tool

from slmkit.agent import ChatLocalSLM, Supervisor, resolve_model_path
from slmkit.agent.multi_agent.plan import split_request
from slmkit.retrieval import KnowledgeBase
from slmkit.routing import KeepLocalIfPII, Keywords, LlamaServer, Route, RoutedChatModel, RoutingPolicy

pytestmark = [pytest.mark.model, pytest.mark.timeout(600)]
REMOTE_MODEL = "qwen2.5-coder-0.5b-instruct"
DOCS = Path(__file__).resolve().parents[2] / "examples" / "docs"
# A .com address: PIIGuard does not flag reserved TLDs such as .example (its e-mail check needs a public suffix).
NAME, EMAIL = "Dana Whitfield", "dana.whitfield@example.com"


@tool
def multiply(a: float, b: float) -> float:
    """Multiply two numbers."""
    return a * b


class Recorder:
    """Keeps the body of every HTTP request sent to the server: exactly what left this process."""

    def __init__(self) -> None:
        self.bodies: list[str] = []

    def __call__(self, request: httpx.Request) -> None:
        self.bodies.append(request.read().decode())

    @property
    def sent(self) -> str:
        return "\n".join(self.bodies)


@pytest.fixture(scope="module")
def server():
    with LlamaServer(resolve_model_path(REMOTE_MODEL), n_ctx=2048, n_threads=2) as running:
        yield running


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def supervisor(server: LlamaServer, recorder: Recorder, **kwargs: Any) -> Supervisor:
    remote = server.chat_model(
        temperature=0, max_tokens=48, http_client=httpx.Client(event_hooks={"request": [recorder]}, timeout=240)
    )
    policy = RoutingPolicy(
        routes={
            "slm": Route(model=ChatLocalSLM(temperature=0, max_tokens=96, n_ctx=2048), local=True, context_window=2048),
            "llm": Route(model=remote, input_usd_per_1k=0.0005, output_usd_per_1k=0.0015, context_window=2048),
        },
        # Private data may reach the LLM as placeholders only; "draft" requests are escalated to it.
        rules=[KeepLocalIfPII(pseudonymize=True), Keywords(words=["draft"], route="llm")],
    )
    return Supervisor(RoutedChatModel(policy=policy), tools=[multiply], **kwargs)


def test_ask_llm_sends_placeholders_and_the_answer_gets_the_values_back(server, recorder):
    ask_llm = supervisor(server, recorder).agents["tools"].tools["ask_llm"]
    question = f"Repeat this sentence exactly: Please call {NAME} at {EMAIL} today."
    message = ask_llm.invoke({"name": "ask_llm", "args": {"question": question}, "id": "c1", "type": "tool_call"})
    assert recorder.bodies, "the remote was never called"
    assert NAME not in recorder.sent
    assert EMAIL not in recorder.sent
    assert "<PERSON_1>" in recorder.sent
    assert "<EMAIL_ADDRESS_1>" in recorder.sent
    result = message.artifact
    assert result.routing.route == "llm"
    assert result.routing.attempts[-1].exact_tokens
    pseudonymized = {a.entity_type for a in result.guard_report.actions if a.action == "pseudonymize"}
    assert {"PERSON", "EMAIL_ADDRESS"} <= pseudonymized
    # Qwen repeats the placeholders; the guard puts the real values back before the SLM (or user) sees them.
    assert NAME in message.text
    assert "<PERSON_1>" not in message.text


def test_the_slm_plans_and_calls_a_tool_under_a_grammar(server, recorder):
    result = supervisor(server, recorder).run("What is 12 times 7?")
    assert [s.agent for s in result.plan.steps] == ["tools"]
    step = result.steps[0]
    assert (step.planned_agent, step.agent) == ("tools", "tools")
    assert step.dispatch is not None
    assert step.dispatch.route == "slm"
    # The first call is forced and grammar-constrained: a known tool with arguments that validate.
    first = step.tool_runs[0]
    assert first.name in ("multiply", "ask_llm")
    assert not first.error, first.output
    if first.name == "multiply":
        assert float(first.output) == first.args["a"] * first.args["b"]
    assert step.routing is not None
    assert step.routing.route == "slm"
    assert step.guard_report is not None
    assert result.answer == step.text
    assert step.text


def test_a_step_the_router_escalates_is_answered_by_the_llm_agent(server, recorder):
    result = supervisor(server, recorder).run(f"Draft a one-line thank-you note to {NAME}.")
    step = result.steps[0]
    assert step.agent == "llm"
    assert step.dispatch is not None
    assert step.dispatch.rule == "Keywords"
    assert step.routing is not None
    assert step.dispatch.pseudonymized
    assert step.routing.route == "llm"
    assert step.text
    assert NAME not in recorder.sent
    body = json.loads(recorder.bodies[-1])
    assert "<PERSON_1>" in body["messages"][-1]["content"]


def test_the_slm_splits_a_request_between_the_docs_and_tool_agents(server, recorder, tmp_path):
    kb = KnowledgeBase(name="examples", path=tmp_path)
    kb.ingest(DOCS, show_progress=False)
    request = "How many vacation days do employees get per year, and what is 28 times 8?"
    result = supervisor(server, recorder, knowledge_base=kb).run(request)
    # The grammar let the SLM name only real agents, so its answer parsed: no fallback, one step per stretch.
    assert not result.plan.fallback, result.plan.reason
    assert {s.agent for s in result.plan.steps} <= {"docs", "tools"}
    parts = split_request(request, 3)
    assert " ".join(s.task for s in result.plan.steps) in (" ".join(parts), request)
    for step in result.steps:
        assert step.guard_report is not None
        if step.agent == "docs":
            # Either the documents hold nothing, or the answer cites the passages it rests on; an answer (a 135M
            # model's guess) that no passage covers gets no citation, and the grounding guard must not pass it.
            grounding = step.guard_report.grounding
            assert step.abstained or step.citations or (grounding is not None and grounding.verdict != "supported")
        else:
            assert step.routing is not None
            assert step.tool_runs
    assert len(result.steps) == len(result.plan.steps)
