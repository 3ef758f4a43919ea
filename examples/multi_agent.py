"""A supervisor splits each request into steps and hands every step to an agent: the document Q&A assistant, a
tool-using SLM (whose tools include ``ask_llm``, the larger model), or the larger LLM when the router escalates.

The local SLM (SmolLM2-135M, in-process) chooses the agents and calls the tools under a grammar. The "remote" LLM is
llama-cpp-python's server on 127.0.0.1 serving the packaged Qwen2.5-Coder-0.5B, reached over HTTP as a hosted model
would be (prices made up). Every request body sent to it is recorded here, to show that names and e-mail addresses
left this machine only as placeholders.

    python examples/multi_agent.py
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import httpx
from langchain_core.tools import tool

from slmkit.agent import ChatLocalSLM, Supervisor, SupervisorConfig, resolve_model_path
from slmkit.retrieval import KnowledgeBase
from slmkit.routing import KeepLocalIfPII, Keywords, LlamaServer, Route, RoutedChatModel, RoutingPolicy

REQUESTS = [
    "How many vacation days do employees get per year, and what is 28 times 8?",
    "What does error code E17 mean? Then multiply 13.5 by 2.",
    "Draft a two-line welcome note for our new colleague Ada Lovelace.",
]


@tool
def multiply(a: float, b: float) -> float:
    """Multiply two numbers."""
    return a * b


def main() -> None:
    sent: list[str] = []  # what the remote LLM received, request by request
    recorder = httpx.Client(event_hooks={"request": [lambda r: sent.append(r.read().decode())]}, timeout=240)
    with (
        tempfile.TemporaryDirectory() as kb_path,
        LlamaServer(resolve_model_path("qwen2.5-coder-0.5b-instruct"), n_ctx=2048) as server,
    ):
        kb = KnowledgeBase(name="examples", path=kb_path)
        kb.ingest(Path(__file__).parent / "docs", show_progress=False)
        policy = RoutingPolicy(
            routes={
                "slm": Route(model=ChatLocalSLM(temperature=0, max_tokens=96), local=True),
                "llm": Route(
                    model=server.chat_model(temperature=0, max_tokens=64, http_client=recorder),
                    input_usd_per_1k=0.0005,
                    output_usd_per_1k=0.0015,
                ),
            },
            # Private data reaches the LLM only as placeholders; writing tasks go to it.
            rules=[KeepLocalIfPII(pseudonymize=True), Keywords(words=["draft", "write"], route="llm")],
        )
        router = RoutedChatModel(policy=policy)
        config = SupervisorConfig(
            descriptions={
                "docs": "questions about Lumen Grid: its handbook, policies, products and people",
                "tools": "arithmetic with the multiply tool, writing and general questions with ask_llm",
            }
        )
        supervisor = Supervisor(router, knowledge_base=kb, tools=[multiply], config=config)

        for request in REQUESTS:
            result = supervisor.run(request)
            print(f"> {request}")
            print("plan: " + " | ".join(f"{s.agent} <- {s.task!r}" for s in result.plan.steps))
            for n, step in enumerate(result.steps, start=1):
                route = step.routing.route if step.routing else "-"
                why = (step.dispatch or step.routing).reason if (step.dispatch or step.routing) else "no model call"
                seconds = result.timings[f"step_{n}_ms"] / 1000
                print(f"  [{n}] {step.agent} agent, {route} route ({why}), {seconds:.1f} s")
                for run in step.tool_runs:
                    args = ", ".join(f"{k}={v!r}" for k, v in run.args.items())
                    via = f" [{run.routing.route} route]" if run.routing else ""
                    print(f"      calls {run.name}({args}) -> {run.output[:100]!r}{via}")
                for c in step.citations:
                    print(f"      [{c.marker}] {Path(c.source).name}")
                actions = step.guard_report.actions if step.guard_report else []
                if pii := sorted({f"{a.action} {a.entity_type}" for a in actions if a.entity_type}):
                    print(f"      guards: {', '.join(pii)}")
                print("      " + step.text.replace("\n", "\n      "))
            print(f"({result.timings['total_ms'] / 1000:.1f} s)\n")

        print(f"The LLM was called {len(sent)} times; the last request it received:")
        if sent:
            print("  " + json.loads(sent[-1])["messages"][-1]["content"])
        print(f"routing: {router.stats.report().requests} decisions, ${router.stats.report().cost_usd:.5f} spent")


if __name__ == "__main__":
    main()
