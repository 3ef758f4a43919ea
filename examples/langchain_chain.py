"""slmkit's parts inside your own LangChain (LCEL) chain: the hybrid retriever, a router and the guards.

    question ─► retriever (BM25 + dense over examples/docs) ─► {"context": docs, "question": ...}
             ─► Guarded( prompt | router )            PII pseudonymized before the model, restored after;
                                                      the answer checked against the retrieved passages
             ─► AIMessage with a RoutingDecision and a GuardReport in response_metadata

The router is a cascade between two local models: SmolLM2-135M answers first, and when its token log-probabilities
say it is unsure, Qwen2.5-Coder-0.5B answers instead. Everything runs offline, on CPU.

    python examples/langchain_chain.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough

from slmkit.agent import ChatLocalSLM
from slmkit.guards import GroundingGuard, Guarded, GuardReport, PIIGuard
from slmkit.retrieval import KnowledgeBase
from slmkit.routing import Cascade, Route, RoutedChatModel, RoutingDecision, RoutingPolicy

DOCS = Path(__file__).parent / "docs"
QUESTIONS = [
    "How many paid vacation days do employees get?",
    "Who answers questions about payroll, and how do I reach them?",
]

PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", "Answer in one or two sentences, only from these passages:\n\n{passages}"),
        ("human", "{question}"),
    ]
)


def passages(inputs: dict) -> str:
    return "\n\n".join(doc.page_content for doc in inputs["context"])


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        kb = KnowledgeBase("handbook", path=folder)
        kb.ingest(DOCS, show_progress=False)
        retriever = kb.as_retriever(k=2)

        small = ChatLocalSLM(model="smollm2-135m-instruct", temperature=0, max_tokens=60)
        larger = ChatLocalSLM(model="qwen2.5-coder-0.5b-instruct", temperature=0, max_tokens=60)
        router = RoutedChatModel(
            policy=RoutingPolicy(
                routes={"small": Route(model=small, local=True), "larger": Route(model=larger, local=True)},
                cascade=Cascade(first="small", then="larger", escalate_below=0.6),
            )
        )
        pii = PIIGuard()
        answer = Guarded(
            RunnablePassthrough.assign(passages=RunnableLambda(passages)) | PROMPT | router,
            guards=[pii],  # pseudonymize on the way in, restore on the way out
            output_guards=[GroundingGuard()],  # grounded in input["context"], the retrieved Documents
        )
        chain = {"context": retriever, "question": RunnablePassthrough()} | answer

        for question in QUESTIONS:
            message = chain.invoke(question)
            decision = RoutingDecision.from_message(message)
            report: GuardReport = message.response_metadata["guard_report"]
            grounding = report.grounding
            print(f"\n> {question}\n{message.content}")
            print(f"  route: {decision.route} ({decision.reason})")
            found = sorted({f.entity_type for f in report.findings.get("input", [])})
            print(f"  PII pseudonymized on the way in: {found}")
            if grounding is not None:
                print(f"  grounding: {grounding.verdict}, score {grounding.score:.2f}")


if __name__ == "__main__":
    main()
