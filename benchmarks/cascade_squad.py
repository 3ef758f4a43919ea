"""The assistant's cascade on document Q&A: the default local model answers first, and unsure answers go to
Qwen2.5-Coder-1.5B behind a real llama.cpp OpenAI-compatible server. How much of the gap between the two models
does it recover, at what share of questions escalated?

    SQuAD-format file -> one document per article -> KnowledgeBase.ingest
    seeded sample (half answerable, half not), each question asked of three assistants, no guards:
      small    Assistant(kb, AssistantConfig(model=--small))                     the local model alone
      large    the cascade's remote assistant (--large's profile, over HTTP)     the 1.5B model alone
      cascade  Assistant(kb, AssistantConfig(model=--small, remote=RemoteModelConfig(base_url=server,
               model=--large, escalate_below=--escalate-below)))                 the real cascade, end to end

A question is *right* when an answerable one is answered correctly (a gold answer in the reply, SQuAD
normalisation, not declined) or an unanswerable one is declined; the share right is the balanced score of a
half-and-half sample. gap recovered = (cascade - small) / (large - small), on the share right (the last line) and on
answered-correct (the table). Beside the real cascade, from the same answers: escalating the lowest-scored answers
by other signals (token ``min_prob``; question order, i.e. at random, as the floor) and an oracle that escalates
exactly the questions where the large model is right and the small one is not, at the same share.

    .venv/bin/python benchmarks/cascade_squad.py --data ../shared/data/qa/squad2_dev.json --n 40

The last line reads ``gap recovered R at E escalated`` (the real cascade at ``--escalate-below``, default the local
profile's operating point). Rows go to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import squad_data
from qa_squad import _progress, _row, summarise
from squad_data import Question, contains_answer

from slmkit.agent import Assistant, AssistantConfig, RemoteModelConfig
from slmkit.agent.catalogue import DEFAULT_MODEL, resolve_model_path
from slmkit.routing import LlamaServer

LARGE = "qwen2.5-coder-1.5b-instruct"
SHARES = (0.1, 0.2, 0.3)


def ask_all(assistant: Assistant, questions: Sequence[Question], name: str) -> list[dict[str, Any]]:
    assistant.ask("What is this document about?")  # warm-up: loads the models, fills the server's cache
    rows = []
    for i, q in enumerate(questions):
        answer = assistant.ask(q.question)
        routing = answer.routing
        first = answer.citations[0].snippet if answer.citations else ""
        rows.append(
            _row(q, answer.text, answer.abstained, answer.timings.get("first_token_ms"), answer.timings["total_ms"])
            | {
                "citation_ok": contains_answer(first, q.answers) if q.answers else None,
                "signals": answer.signals,
                "escalated": bool(routing and routing.escalated),
            }
        )
        print(f"{name}: ", end="", file=sys.stderr)
        _progress(i, len(questions), rows[-1])
    return rows


def right(row: dict[str, Any]) -> float:
    return float(row["declined"] if row["impossible"] else (row["correct"] and not row["declined"]))


def correct(row: dict[str, Any]) -> float:
    return float(row["correct"] and not row["impossible"])


def recovered(small: float, large: float, cascade: float) -> float:
    """Share of the gap recovered; with no gap (the large model is not better), 1.0 if nothing was lost."""
    if large - small <= 1e-9:
        return 1.0 if cascade >= small - 1e-9 else 0.0
    return (cascade - small) / (large - small)


def mixed(
    small: Sequence[dict[str, Any]], large: Sequence[dict[str, Any]], escalate: set[int], metric: Callable[..., float]
) -> float:
    return sum(metric(large[i] if i in escalate else small[i]) for i in range(len(small))) / len(small)


def lowest(small: Sequence[dict[str, Any]], signal: str, count: int) -> set[int]:
    """The ``count`` answered (not declined) questions with the lowest ``signal``: declines stand, as in the
    assistant's cascade."""
    answered = [i for i, r in enumerate(small) if not r["declined"] and signal in r["signals"]]
    return set(sorted(answered, key=lambda i: small[i]["signals"][signal])[:count])


def in_order(small: Sequence[dict[str, Any]], count: int) -> set[int]:
    """The first ``count`` answered questions of the (shuffled) sample: escalation at random."""
    return set([i for i, r in enumerate(small) if not r["declined"]][:count])


def oracle(small: Sequence[dict[str, Any]], large: Sequence[dict[str, Any]], count: int) -> set[int]:
    gains = [i for i in range(len(small)) if right(large[i]) > right(small[i])]
    return set(gains[:count])


def curve(small: list[dict[str, Any]], large: list[dict[str, Any]]) -> list[str]:
    n = len(small)
    s_right, l_right = (sum(map(right, rows)) / n for rows in (small, large))
    s_ok, l_ok = (sum(map(correct, rows)) / n for rows in (small, large))
    per_answerable = n / max(1, sum(not r["impossible"] for r in small))  # answered-correct is a share of these
    pickers: dict[str, Callable[[int], set[int]]] = {
        "answer_score (the cascade's signal)": lambda c: lowest(small, "answer_score", c),
        "token min_prob": lambda c: lowest(small, "min_prob", c),
        "at random (sample order)": lambda c: in_order(small, c),
        "oracle": lambda c: oracle(small, large, c),
    }
    lines = [
        "| escalation by | share escalated | right | recovered (right) | answered-correct | recovered (a.-c.) |",
        "|---|---|---|---|---|---|",
    ]
    for name, pick in pickers.items():
        for share in SHARES:
            chosen = pick(round(share * n))
            r, ok = mixed(small, large, chosen, right), mixed(small, large, chosen, correct)
            lines.append(
                f"| {name} | {len(chosen) / n:.2f} | {r:.3f} | {recovered(s_right, l_right, r):.2f} "
                f"| {ok * per_answerable:.3f} | {recovered(s_ok, l_ok, ok):.2f} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=squad_data.SQUAD, help="a file in the format of squad2_dev.json")
    parser.add_argument("--n", type=int, default=40, help="questions (half answerable, half not)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--small", default=DEFAULT_MODEL, help="the local model (catalogue id)")
    parser.add_argument("--large", default=LARGE, help="the model the server runs (catalogue id)")
    parser.add_argument(
        "--escalate-below", default="auto", help="'auto' (the small model's profile) or a number in [0, 1]"
    )
    parser.add_argument("--threads", type=int, default=None, help="threads of the server (default: llama.cpp's)")
    parser.add_argument("--out", type=Path, default=squad_data.WORK / "cascade_squad")
    args = parser.parse_args()
    threshold: float | str = args.escalate_below if args.escalate_below == "auto" else float(args.escalate_below)

    started = time.perf_counter()
    _, questions = squad_data.load(args.data)
    questions = squad_data.sample(questions, args.n, args.seed)
    kb = squad_data.knowledge_base(args.out / "kb", args.data)
    print(f"knowledge base ready ({time.perf_counter() - started:.1f}s)", file=sys.stderr)

    with LlamaServer(resolve_model_path(args.large), n_ctx=4096, n_threads=args.threads) as server:
        remote = RemoteModelConfig(base_url=server.base_url, model=args.large, escalate_below=threshold)
        cascade = Assistant(kb, guards=[], config=AssistantConfig(model=args.small, remote=remote))
        assert cascade.remote_assistant is not None
        rows = {
            "small": ask_all(Assistant(kb, guards=[], config=AssistantConfig(model=args.small)), questions, "small"),
            "large": ask_all(cascade.remote_assistant, questions, "large"),
            "cascade": ask_all(cascade, questions, "cascade"),
        }

    out = args.out / Path(args.data).stem
    out.mkdir(parents=True, exist_ok=True)
    for name, got in rows.items():
        with (out / f"{name}-n{args.n}-s{args.seed}.jsonl").open("w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in got)
        print(name, json.dumps(summarise(got)))

    n = len(questions)
    small, large, real = rows["small"], rows["large"], rows["cascade"]
    print("\n".join(curve(small, large)))
    share = sum(r["escalated"] for r in real) / n
    s_right, l_right, c_right = (sum(map(right, got)) / n for got in (small, large, real))
    s_ok, l_ok, c_ok = (summarise(got)["answered_correct"] for got in (small, large, real))
    print(
        f"\nright: small {s_right:.3f}, large {l_right:.3f}, cascade {c_right:.3f} "
        f"(answered-correct: {s_ok:.3f}, {l_ok:.3f}, {c_ok:.3f}, gap recovered {recovered(s_ok, l_ok, c_ok):.2f}); "
        f"escalate_below={cascade.escalate_below}; {time.perf_counter() - started:.0f} s in all"
    )
    print(f"gap recovered {recovered(s_right, l_right, c_right):.2f} at {share:.2f} escalated")


if __name__ == "__main__":
    main()
