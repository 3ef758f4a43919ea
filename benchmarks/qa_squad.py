"""Document Q&A end to end on SQuAD 2.0 articles: is the answer right, and does it decline when the documents
do not hold the answer? slmkit's ``Assistant`` beside the LangChain RAG tutorial chain, same model, same embedder,
same questions, in one run.

    articles -> one file each -> KnowledgeBase.ingest (slmkit) / the tutorial's splitter + Chroma (chain)
    question (seeded sample, half answerable, half not) -> Assistant(kb, AssistantConfig(model=...)).ask
                                                        -> TutorialChain.ask
    reply -> answered-correct   answerable, a gold answer in the reply (SQuAD normalisation), not declined
             declined-correctly unanswerable, declined (``Answer.abstained``; the chain: "I don't know", ...)
             false-decline      answerable, declined
             balanced           mean of answered-correct and declined-correctly
             citation precision correct answers whose first citation's snippet holds a gold answer
             first token p50, seconds per question p50

Rows (with the assistant's decline signals, ``Answer.signals``) go to ``--out`` as JSON lines, one file per system
and model, so thresholds can be fitted offline (``benchmarks/abstention_fit.py``); the table of everything measured
on that sample is printed at the end and by ``--report`` (from the row files). ``--set key=value`` overrides an
AssistantConfig field (profile tuning); such runs are stored under their own name.

    .venv/bin/python benchmarks/qa_squad.py --n 200
    .venv/bin/python benchmarks/qa_squad.py --models qwen2.5-coder-0.5b-instruct --systems assistant --set k=5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import squad_data
from squad_data import Question, contains_answer, declines
from tutorial_chain import TutorialChain

from slmkit.agent import Assistant, AssistantConfig
from slmkit.agent.catalogue import CATALOGUE

SYSTEMS = ("assistant", "chain")


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``k=5 passage_chars=900 instructions="..."`` -> typed values (JSON where it parses, else the string)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def run_assistant(
    kb: Any, model: str, questions: list[Question], overrides: dict[str, Any], *, guards: bool = True
) -> list[dict[str, Any]]:
    assistant = Assistant(kb, config=AssistantConfig(model=model, **overrides), guards=None if guards else [])
    assistant.ask("What is this document about?")  # warm-up: loads every model
    rows = []
    for i, q in enumerate(questions):
        answer = assistant.ask(q.question)
        first = answer.citations[0].snippet if answer.citations else ""
        rows.append(
            _row(q, answer.text, answer.abstained, answer.timings.get("first_token_ms"), answer.timings["total_ms"])
            | {
                "citation_ok": contains_answer(first, q.answers) if q.answers else None,
                "shown_gold": any(squad_data.holds_gold(c.snippet, q) for c in answer.citations),
                "signals": answer.signals,
            }
        )
        _progress(i, len(questions), rows[-1])
    return rows


def run_chain(chain: TutorialChain, questions: list[Question]) -> list[dict[str, Any]]:
    chain.ask("What is this document about?")  # warm-up
    rows = []
    for i, q in enumerate(questions):
        reply = chain.ask(q.question)
        # The chain cites nothing; its "first citation" is the first passage it retrieved.
        first = reply.passages[0].page_content if reply.passages else ""
        rows.append(
            _row(q, reply.text, declines(reply.text), reply.first_token_ms, reply.total_ms)
            | {"citation_ok": contains_answer(first, q.answers) if q.answers else None}
        )
        _progress(i, len(questions), rows[-1])
    return rows


def _row(q: Question, text: str, declined: bool, first_ms: float | None, total_ms: float) -> dict[str, Any]:
    return {
        "id": q.id,
        "article": q.article,
        "impossible": q.impossible,
        "question": q.question,
        "answers": list(q.answers),
        "text": text,
        "declined": declined,
        "correct": (not declined) and contains_answer(text, q.answers) if q.answers else False,
        "first_token_ms": first_ms,
        "total_ms": total_ms,
    }


def _progress(i: int, n: int, row: dict[str, Any]) -> None:
    mark = "declined" if row["declined"] else ("right" if row["correct"] else "wrong")
    kind = "unanswerable" if row["impossible"] else "answerable"
    print(f"[{i + 1}/{n}] {kind:<12} {mark:<8} {row['text'][:90]!r}", file=sys.stderr, flush=True)


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    answerable = [r for r in rows if not r["impossible"]]
    unanswerable = [r for r in rows if r["impossible"]]
    correct = [r for r in answerable if r["correct"]]

    def share(items: list[dict[str, Any]], key: str) -> float:
        return round(sum(1 for r in items if r[key]) / len(items), 3) if items else 0.0

    answered_correct = share(answerable, "correct")
    declined_correctly = share(unanswerable, "declined")
    first = [r["first_token_ms"] for r in rows if r["first_token_ms"] is not None and not r["declined"]]
    return {
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "answered_correct": answered_correct,
        "declined_correctly": declined_correctly,
        "false_decline": share(answerable, "declined"),
        "balanced": round((answered_correct + declined_correctly) / 2, 3),
        "citation_precision": share(correct, "citation_ok"),
        "first_token_p50_s": round(statistics.median(first) / 1000, 2) if first else None,
        "seconds_per_question_p50": round(statistics.median(r["total_ms"] for r in rows) / 1000, 2),
    }


def report(summaries: dict[str, dict[str, Any]]) -> str:
    head = (
        "| model | system | questions (ans. / unans.) | answered-correct | declined-correctly | false-decline "
        "| balanced | citation precision | first token p50 | s / question p50 |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for name, s in sorted(summaries.items()):
        model, system = name.split("/", 1)
        lines.append(
            f"| {model} | {system} | {s['answerable']} / {s['unanswerable']} | {s['answered_correct']} "
            f"| {s['declined_correctly']} | {s['false_decline']} | **{s['balanced']}** | {s['citation_precision']} "
            f"| {s['first_token_p50_s']} s | {s['seconds_per_question_p50']} s |"
        )
    return head + "\n".join(lines)


def recorded(folder: Path, n: int, seed: int) -> dict[str, dict[str, Any]]:
    """Summaries of every run recorded in ``folder`` for this sample (several processes may have written them)."""
    out = {}
    for path in sorted(folder.glob(f"*-n{n}-s{seed}.jsonl")):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        out[path.name.removesuffix(f"-n{n}-s{seed}.jsonl").replace("__", "/", 1)] = summarise(rows)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=squad_data.SQUAD, help="a file in the format of squad2_dev.json")
    parser.add_argument("--models", nargs="+", default=list(CATALOGUE), choices=list(CATALOGUE))
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--n", type=int, default=200, help="questions (half answerable, half not)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--articles", nargs="*", help="only questions on these article titles")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="AssistantConfig overrides")
    parser.add_argument(
        "--no-guards", action="store_true", help="the assistant without PII and grounding guards (faster tuning runs)"
    )
    parser.add_argument("--out", type=Path, default=squad_data.WORK / "qa_squad")
    parser.add_argument("--report", action="store_true", help="print the table of results so far and exit")
    args = parser.parse_args()

    out = args.out / args.data.stem
    out.mkdir(parents=True, exist_ok=True)
    if args.report:
        print(report(recorded(out, args.n, args.seed)))
        return

    _, questions = squad_data.load(args.data)
    questions = squad_data.sample(questions, args.n, args.seed, articles=args.articles)
    overrides = parse_overrides(args.set)
    tag = "".join(f",{k}={v}" for k, v in sorted(overrides.items()))[:80]
    started = time.perf_counter()
    kb = squad_data.knowledge_base(args.out / "kb", args.data) if "assistant" in args.systems else None
    folder = squad_data.write_articles(squad_data.load(args.data)[0], args.out / "kb" / "articles" / args.data.stem)
    print(f"knowledge base ready ({time.perf_counter() - started:.1f}s)", file=sys.stderr)
    for model in args.models:
        for system in args.systems:
            if system == "assistant":
                rows = run_assistant(kb, model, questions, overrides, guards=not args.no_guards)
                name = f"{model}/assistant{tag}" + (",no-guards" if args.no_guards else "")
            else:
                chain = TutorialChain(folder, args.out / "chain-chroma" / args.data.stem, model)
                rows = run_chain(chain, questions)
                name = f"{model}/chain"
            stem = name.replace("/", "__").replace(" ", "_")[:150]
            with (out / f"{stem}-n{args.n}-s{args.seed}.jsonl").open("w", encoding="utf-8") as fh:
                fh.writelines(json.dumps(r) + "\n" for r in rows)
            print(name, json.dumps(summarise(rows)), flush=True)
    print(report(recorded(out, args.n, args.seed)))


if __name__ == "__main__":
    main()
