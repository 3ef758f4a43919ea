"""GuardMiddleware inside a real ``create_agent`` loop with the local SmolLM2-135M.

SmolLM2-135M does not choose tools on its own, so a test middleware forces the first call to use the tool
(grammar-constrained in ChatLocalSLM) and the second to answer in text from the tool result. The guards must run on both
model calls: the model never sees the customer's name, the tool gets real values, and the final answer carries a
report with a grounding check against the tool result.
"""

from __future__ import annotations

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool

from slmkit.guards import GroundingGuard, GuardMiddleware, GuardReport, PIIGuard

pytestmark = pytest.mark.model

received: list[str] = []


@tool
def lookup_order(customer: str) -> str:
    """Look up the latest order of a customer by name."""
    received.append(customer)
    return "Order 4411 shipped on 3 May 2024 by DHL. It contains two blue chairs."


class ForceFirstToolCall(AgentMiddleware):
    """First call: must call the tool; afterwards: must answer in text (else a tiny model may loop on the tool)."""

    def wrap_model_call(self, request, handler):
        called = any(isinstance(m, ToolMessage) for m in request.messages)
        return handler(request.override(tool_choice="none" if called else "lookup_order"))


class RecordPrompts(AgentMiddleware):
    """Innermost: sees exactly what the model sees."""

    def __init__(self) -> None:
        super().__init__()
        self.prompts: list[str] = []

    def wrap_model_call(self, request, handler):
        self.prompts.append(" ".join(str(m.content) for m in request.messages))
        return handler(request)


def test_guards_run_on_every_model_call_of_an_agent():
    from slmkit.agent import ChatLocalSLM

    received.clear()
    record = RecordPrompts()
    pii = PIIGuard()
    llm = ChatLocalSLM(model="smollm2-135m-instruct", temperature=0, max_tokens=32, seed=0)
    agent = create_agent(
        llm,
        tools=[lookup_order],
        middleware=[
            GuardMiddleware(input_guards=[pii], output_guards=[pii, GroundingGuard()]),
            ForceFirstToolCall(),
            record,
        ],
    )
    result = agent.invoke({"messages": [HumanMessage("Where is the order of Maria Gonzalez?")]})

    assert len(record.prompts) == 2  # tool call, then the answer
    assert all("Maria Gonzalez" not in p for p in record.prompts)
    assert "<PERSON_1>" in record.prompts[0]
    assert received, "the forced tool call did not reach the tool"
    assert all("<PERSON_" not in r for r in received)  # placeholders restored before the tool runs
    final = result["messages"][-1]
    report = final.response_metadata["guard_report"]
    assert isinstance(report, GuardReport)
    assert report.findings["input"][0].entity_type == "PERSON"
    if final.content.strip():
        assert report.grounding is not None
        assert 0.0 <= report.grounding.score <= 1.0
