"""A routing policy in code: the local SLM answers most requests, a larger model behind an OpenAI-compatible server
answers the rest, and every answer says why it went where it did.

The "remote" here is llama-cpp-python's server on 127.0.0.1 serving the packaged Qwen2.5-Coder (1.5B if installed,
else 0.5B), reached over HTTP with langchain-openai exactly as a hosted LLM would be; its prices are made up.

    python examples/routing_policy.py
"""

from __future__ import annotations

from slmkit.agent import CATALOGUE, ChatLocalSLM, model_status, resolve_model_path
from slmkit.guards import PIIGuard
from slmkit.routing import (
    Budget,
    Cascade,
    KeepLocalIfPII,
    Keywords,
    LlamaServer,
    LogprobConfidence,
    PreferLargeIfLong,
    Route,
    RoutedChatModel,
    RoutingDecision,
    RoutingPolicy,
    Semantic,
)

REQUESTS = [
    "Hi! What can you do?",
    "Write a Python function that checks whether a string is a palindrome.",
    "Please write a short note to Ada Lovelace (ada@example.com) about tomorrow's meeting.",
    "Explain step by step how binary search works.",
]

PRIVATE = ["PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN"]


def remote_model_id() -> str:
    big = "qwen2.5-coder-1.5b-instruct"
    return (
        big if big in CATALOGUE and model_status(big).state in ("ready", "installed") else "qwen2.5-coder-0.5b-instruct"
    )


def main() -> None:
    with LlamaServer(resolve_model_path(remote_model_id()), n_ctx=4096) as server:
        policy = RoutingPolicy(
            routes={
                "slm": Route(model=ChatLocalSLM(temperature=0, max_tokens=96), local=True, context_window=4096),
                "llm": Route(
                    model=server.chat_model(temperature=0, max_tokens=160),
                    input_usd_per_1k=0.0005,
                    output_usd_per_1k=0.0015,
                    context_window=4096,
                ),
            },
            rules=[
                # Private data never leaves the machine; which entities count as private is the guard's setting.
                KeepLocalIfPII(detector=PIIGuard(entities=PRIVATE)),
                PreferLargeIfLong(tokens=1500),
                Keywords(words=["prove", "step by step"]),
                Semantic(
                    utterances={
                        "code": ["write a function that parses a date", "fix this stack trace", "refactor this"],
                        "chitchat": ["hi!", "how are you?", "thanks, that's all"],
                    },
                    to={"code": "llm", "chitchat": "slm"},
                ),
            ],
            cascade=Cascade(first="slm", then="llm", escalate_below=0.5, confidence=LogprobConfidence()),
            budget=Budget(usd_per_day=2.0),
        )
        routed = RoutedChatModel(policy=policy)
        for text in REQUESTS:
            message = routed.invoke(text)
            decision = RoutingDecision.from_message(message)
            print(f"\n> {text}\n[{decision.route}] {decision.reason} (cost ${decision.actual_cost_usd:.6f})")
            print(str(message.content)[:300])
        report = routed.stats.report()
        shares = ", ".join(f"{name} {totals.share:.0%}" for name, totals in report.routes.items())
        print(f"\n{report.requests} requests: {shares}; spent ${report.cost_usd:.6f}, saved ${report.saved_usd:.6f}")


if __name__ == "__main__":
    main()
