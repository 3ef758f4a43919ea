"""slmkit in a LangChain ``create_agent`` agent: the local SLM, the knowledge base as a tool, guards as middleware.

    user message ─► GuardMiddleware (PII pseudonymized before every model call, restored after; the answer
                    checked against the tool results) ─► ChatLocalSLM ─► search_docs tool (hybrid retriever)
                 ─► final AIMessage with a GuardReport in response_metadata

A 0.5B model does not reliably decide on its own to look things up, so a small middleware makes its first call a
(grammar-constrained) tool call and the next one a plain answer: retrieval first, then the answer.

    python examples/langchain_agent.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import create_retriever_tool

from slmkit.agent import ChatLocalSLM
from slmkit.guards import GroundingGuard, GuardMiddleware, PIIGuard
from slmkit.retrieval import KnowledgeBase, KnowledgeBaseConfig

DOCS = Path(__file__).parent / "docs"
QUESTION = "What does error code E42 on the GridBox mean, and whom can I call about it?"


class SearchFirst(AgentMiddleware):
    """First model call: must call the search tool; afterwards: no tools, and a nudge to answer in words (a small
    model otherwise imitates its own tool call from the turn before)."""

    def wrap_model_call(self, request, handler):
        if any(isinstance(m, ToolMessage) for m in request.messages):
            nudge = HumanMessage("Now answer my question in plain sentences, using only these search results.")
            return handler(request.override(tools=[], tool_choice=None, messages=[*request.messages, nudge]))
        return handler(request.override(tool_choice="search_docs"))


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        # small chunks, not merged: a 0.5B model answers best from a few short, focused passages
        kb = KnowledgeBase("gridbox", path=folder, config=KnowledgeBaseConfig(chunk_size=96, chunk_overlap=16))
        kb.ingest(DOCS, show_progress=False)
        retriever = kb.as_retriever(k=2, merge_neighbours=False)
        search = create_retriever_tool(retriever, "search_docs", "Search Lumen Grid's product and company documents.")
        pii = PIIGuard()
        agent = create_agent(
            ChatLocalSLM(model="qwen2.5-coder-0.5b-instruct", temperature=0, max_tokens=96),
            tools=[search],
            system_prompt="Answer from the search results in at most three sentences.",
            middleware=[GuardMiddleware(input_guards=[pii], output_guards=[pii, GroundingGuard()]), SearchFirst()],
        )
        result = agent.invoke({"messages": [("user", QUESTION)]})

        for message in result["messages"]:
            calls = getattr(message, "tool_calls", None)
            if calls:
                print(f"[{message.type}] calls {calls[0]['name']}({calls[0]['args']})")
            else:
                print(f"[{message.type}] {str(message.content)[:300]}")
        report = result["messages"][-1].response_metadata["guard_report"]
        entities = sorted({f.entity_type for stage in report.findings.values() for f in stage})
        print(f"\nPII the model saw only as placeholders: {entities}")
        if report.grounding is not None:
            print(f"grounding: {report.grounding.verdict}, score {report.grounding.score:.2f}")


if __name__ == "__main__":
    main()
