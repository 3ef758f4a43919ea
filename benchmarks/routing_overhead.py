"""Router overhead per decision, without model calls: ``RoutingPolicy.plan`` with rules + semantic + learned signals.

The policy has four preference rules placed so that the expensive ones are evaluated on (almost) every request:
PreferLargeIfLong, Keywords, Semantic (three categories, 15 examples) and Learned (a LearnedRouter trained on 3,000
MMLU prompts). It is measured twice in one run: with the defaults (the static token table distilled from MiniLM,
``sif`` weighting for Semantic and ``zipf`` for the router: two table look-ups per decision) and, as the baseline,
with the full MiniLM for both (one shared forward pass per decision; training vectors from benchmarks/out's
embedding cache). Routes are fake chat models (never called).
Prompts: 300 distinct MMLU questions and short chat requests, none seen in training, each planned once after a
warm-up. Reported: p50/p95 of the whole decision (wall clock, and the process's CPU time, which is what a decision
costs when the cores are not shared) and of its parts (the prompt's embedding; the rest of the decision
with the embedding already computed), and, separately,
the PII constraint (Presidio via slmkit.guards) that runs only when a non-local route may be called.

    python benchmarks/routing_overhead.py [--n 300]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import FakeListChatModel
from langchain_core.messages import HumanMessage
from routing_routellm import OUT, ROOT, embeddings_for, load  # type: ignore[import-not-found]

from slmkit.routing import (
    KeepLocalIfPII,
    Keywords,
    Learned,
    LearnedRouter,
    PreferLargeIfLong,
    Route,
    RoutingPolicy,
    Semantic,
)
from slmkit.routing.embedding import default_embeddings, minilm_embeddings
from slmkit.routing.request import RoutingRequest

CHAT = [
    "hi, how are you today?",
    "Write a Python function that merges two sorted lists.",
    "What's a good name for a grey cat?",
    "Translate 'good morning' into French.",
    "Why does my Docker container exit immediately?",
    "Summarise the plot of Hamlet in two sentences.",
]
UTTERANCES = {
    "code": ["write a function that parses a date", "fix this stack trace", "refactor this class", "regex for emails",
             "why does my loop never end"],
    "chitchat": ["hi!", "how are you?", "thanks, that's all", "good morning", "tell me a joke"],
    "maths": ["prove that the sum of two even numbers is even", "solve for x: 3x + 5 = 11", "integrate x^2 dx",
              "what is the derivative of sin x", "how many primes are below 100"],
}  # fmt: skip


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered), 3),
        "p95": round(ordered[int(0.95 * (len(ordered) - 1))], 3),
    }


def build_policy(semantic: Embeddings, router: LearnedRouter) -> RoutingPolicy:
    fake = FakeListChatModel(responses=["ok"])
    return RoutingPolicy(
        routes={
            "slm": Route(model=fake, local=True),
            "llm": Route(model=fake, input_usd_per_1k=0.001, output_usd_per_1k=0.004, context_window=128_000),
        },
        # A local-only first pass: the PII constraint is measured on its own below.
        rules=[
            PreferLargeIfLong(tokens=1500),
            Keywords(words=["step by step", "prove rigorously"], route="llm"),
            Semantic(
                utterances=UTTERANCES,
                to={"code": "llm", "chitchat": "slm", "maths": "llm"},
                threshold=1.0,  # never fires, so Learned is always evaluated too
                embeddings=semantic,
            ),
            Learned(router=router, route="slm", threshold=1.0),
        ],
        default="slm",
    )


def measure(policy: RoutingPolicy, embedders: list[Embeddings], texts: list[str]) -> dict[str, dict[str, float]]:
    """p50/p95 of the whole decision (wall, CPU), of the prompt's embeddings, and of the rest of the decision."""
    for text in CHAT:  # warm-up: model or table load, tiktoken, example embeddings
        policy.plan(RoutingRequest([HumanMessage(text)]))
    total, cpu, embed, rest = [], [], [], []
    for text in texts:
        cpu_started = time.process_time()
        plan = policy.plan(RoutingRequest([HumanMessage(text)]))  # embeds the prompt inside the decision
        cpu.append((time.process_time() - cpu_started) * 1000)
        assert len(plan.decision.signals) >= 5, plan.decision.signals
        total.append(plan.decision.overhead_ms)
        request = RoutingRequest([HumanMessage(text + " ")])  # another text: nothing cached
        started = time.perf_counter()
        for embedder in embedders:
            request.embedding(embedder)
        embed.append((time.perf_counter() - started) * 1000)
        rest.append(policy.plan(request).decision.overhead_ms)  # the embeddings are already in the request
    return {
        "decision_rules_semantic_learned_ms": percentiles(total),
        # CPU time of this process (all its threads) per decision: what the decision costs when it gets the cores.
        "decision_rules_semantic_learned_cpu_ms": percentiles(cpu),
        "embedding_ms": percentiles(embed),
        "decision_without_embedding_ms": percentiles(rest),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()

    _, prompts, weak, strong = load(ROOT.parent / "shared" / "data" / "routing")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(prompts))
    train, test = order[:3000], order[3000 : 3000 + args.n - len(CHAT) * 5]
    train_prompts, train_labels = [prompts[i] for i in train], (~weak[train] & strong[train]).astype(int)
    texts = [prompts[i] for i in test] + [f"{c} ({k})" for k in range(5) for c in CHAT]

    # The defaults: static MiniLM table, sif weighting for Semantic, zipf for the learned router.
    static_router = LearnedRouter().fit(train_prompts, train_labels, target_share=0.3)
    static_semantic = default_embeddings()
    static = build_policy(static_semantic, static_router)
    # The baseline: the full MiniLM for both (one shared forward pass per decision).
    minilm = minilm_embeddings()
    cache = embeddings_for(prompts)
    minilm_router = LearnedRouter(minilm).fit(
        train_prompts, train_labels, target_share=0.3, vectors=cache.encode(train_prompts)
    )
    result: dict[str, object] = {
        "n": len(texts),
        "static (default)": measure(static, [static_semantic, static_router.embeddings], texts),
        "MiniLM": measure(build_policy(minilm, minilm_router), [minilm], texts),
    }

    # Every request asks for the non-local route, so every decision runs the PII scan.
    pii_policy = RoutingPolicy(routes=static.routes, rules=[KeepLocalIfPII(), Keywords(patterns=["."], route="llm")])
    pii_policy.plan(RoutingRequest([HumanMessage("warm up, Ada Lovelace")]))
    pii = [pii_policy.plan(RoutingRequest([HumanMessage(t)])).decision.overhead_ms for t in texts[:100]]
    result |= {
        "decision_with_pii_check_ms": percentiles(pii),
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "routing_overhead.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
