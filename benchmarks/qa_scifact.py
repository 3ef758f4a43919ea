"""The assistant end to end on SciFact: does the corpus SUPPORT or CONTRADICT each claim, and which abstract says so?

Per claim (BEIR SciFact train claims; the whole 5,183-abstract corpus is in the knowledge base):

    claim -> Assistant (retrieval, prompt, model, citations, guards) -> answer text + citations + timings
    question       = "Is it true that <claim>?", asked with the assistant's default settings
    verdict        = whichever comes first in the answer: no / not / false / contradict (CONTRADICT) or
                     yes / true / support / confirm (SUPPORT); neither = wrong
    first citation = the abstract of ``answer.citations[0]`` (the passage the answer's first supported sentence
                     rests on); any citation = any cited abstract

Reported per model and variant ("guarded": the default Assistant, a RoutedChatModel and the PII + grounding
guards; "bare": the same ChatLocalSLM called directly, no guards):

    verdict accuracy         claims with evidence, predicted label == gold label
    citation accuracy        claims with evidence, first citation is an evidence abstract (no citation = wrong)
    any-citation accuracy    claims with evidence, some citation is an evidence abstract
    shown@k                  claims with evidence, an evidence abstract is among the passages shown (the ceiling)
    abstention (no evidence) claims whose abstracts hold no evidence (NEI), share the assistant abstained on
    abstention (evidence)    claims with evidence it abstained on (should be 0)
    time to first token p50, total p50 (ms; one warm-up question first, not counted)

The knowledge base is made once (``--kb-path``; ingesting SciFact takes ~30 minutes on 2 cores) and reused.
Results accumulate in ``--out`` (one entry per model and variant), so models can be run one at a time under the
shared lock; ``--report`` prints the markdown table of everything measured so far.

    .venv/bin/python benchmarks/qa_scifact.py --models smollm2-135m-instruct --variants guarded bare --limit 60
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from retrieval_data import SCIFACT, WORK, doc_id, write_corpus

from slmkit.agent import Assistant, AssistantConfig, ChatLocalSLM
from slmkit.agent.prompts import one_per_source
from slmkit.retrieval import KnowledgeBase

QUESTION = "Is it true that {claim}?"
"""The claim as a question to the assistant with its default settings (the default instructions: copy one
sentence and cite it); a yes or no in the answer is the verdict."""
KB_NAME = "scifact-md-256-32"
_CONTRADICT = re.compile(r"\bno\b|\bnot\b|n't\b|\bfalse\b|contradict|refute", re.IGNORECASE)
_SUPPORT = re.compile(r"\byes\b|\btrue\b|\bsupport|confirm|\bindeed\b", re.IGNORECASE)


def verdict(text: str) -> str | None:
    """The label an answer states first: CONTRADICT, SUPPORT, or None."""
    hits = [(m.start(), "CONTRADICT") for m in _CONTRADICT.finditer(text)]
    hits += [(m.start(), "SUPPORT") for m in _SUPPORT.finditer(text)]
    if not hits:
        return None
    first = min(hits)[0]
    labels = {label for at, label in hits if at == first}
    return "CONTRADICT" if "CONTRADICT" in labels else "SUPPORT"


def question(claim: str) -> str:
    return QUESTION.format(claim=claim[0].lower() + claim[1:] if claim[1:2].islower() else claim).replace(".?", "?")


def load_claims() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(claims with evidence: id, text, evidence doc ids, label), (claims without evidence), in id order."""
    merged: dict[str, dict[str, Any]] = {}
    with (SCIFACT / "train_claims.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            claim = merged.setdefault(row["_id"], {"id": row["_id"], "text": row["text"], "evidence": {}})
            if row["evidence_doc_id"]:
                claim["evidence"][row["evidence_doc_id"]] = row["evidence_label"]
    with_evidence, without = [], []
    for claim in sorted(merged.values(), key=lambda c: int(c["id"])):
        labels = set(claim["evidence"].values())
        if len(labels) == 1:
            claim["label"] = labels.pop()
            with_evidence.append(claim)
        elif not labels:
            without.append(claim)
    return with_evidence, without


def spread(items: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Every (len/n)-th item: a deterministic sample across the id range."""
    if n >= len(items):
        return items
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def assistant_for(kb: KnowledgeBase, model: str, variant: str) -> Assistant:
    config = AssistantConfig(model=model)
    if variant == "guarded":
        return Assistant(kb, config=config)
    bare = ChatLocalSLM(model=model, temperature=config.temperature, max_tokens=config.max_tokens)
    return Assistant(kb, model=bare, guards=[], config=config)


def run(
    kb: KnowledgeBase,
    model: str,
    variant: str,
    evidence: list[dict[str, Any]],
    nei: list[dict[str, Any]],
    form: str = "question",
) -> dict[str, Any]:
    assistant = assistant_for(kb, model, variant)
    assistant.ask(
        question("Vitamin D supplements prevent bone fractures in older adults.")
    )  # warm-up: loads every model
    rows = []
    for claim in [*evidence, *nei]:
        answer = assistant.ask(question(claim["text"]) if form == "question" else claim["text"])
        docs = [doc_id(c.source) for c in answer.citations]
        shown = [doc_id(s) for s in _shown_sources(assistant, answer.query)]
        rows.append(
            {
                "id": claim["id"],
                "has_evidence": bool(claim["evidence"]),
                "label": claim.get("label"),
                "evidence": sorted(claim["evidence"]),
                "text": answer.text,
                "verdict": None if answer.abstained else verdict(answer.text),
                "cited": docs,
                "shown": shown,
                "abstained": answer.abstained,
                "first_token_ms": answer.timings.get("first_token_ms"),
                "total_ms": answer.timings.get("total_ms"),
                "route": answer.routing.route if answer.routing else None,
                "grounding": answer.guard_report.grounding.verdict
                if answer.guard_report and answer.guard_report.grounding
                else None,
            }
        )
        print(f"{claim['id']:>5} {rows[-1]['verdict'] or '-':<10} cited={docs} evidence={sorted(claim['evidence'])}")
    return {"model": model, "variant": variant, "rows": rows, "summary": summarise(rows)}


def _shown_sources(assistant: Assistant, query: str) -> list[str]:
    """The passages the assistant showed the model (retrieval is deterministic, so asking again is exact)."""
    k = assistant.config.k
    return [d.metadata["source"] for d in one_per_source(assistant.retriever.invoke(query, k=3 * k), k)]


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ev = [r for r in rows if r["has_evidence"]]
    nei = [r for r in rows if not r["has_evidence"]]

    def share(items: list[dict[str, Any]], test: Any) -> float | None:
        return round(sum(1 for r in items if test(r)) / len(items), 3) if items else None

    answered = [r for r in rows if not r["abstained"]]
    return {
        "claims_with_evidence": len(ev),
        "claims_without_evidence": len(nei),
        "verdict_accuracy": share(ev, lambda r: r["verdict"] == r["label"]),
        "citation_accuracy_first": share(ev, lambda r: bool(r["cited"]) and r["cited"][0] in r["evidence"]),
        "citation_accuracy_any": share(ev, lambda r: any(d in r["evidence"] for d in r["cited"])),
        "cited_at_all": share(ev, lambda r: bool(r["cited"])),
        "shown_at_k": share(ev, lambda r: any(d in r["evidence"] for d in r["shown"])),
        "abstention_without_evidence": share(nei, lambda r: r["abstained"]),
        "abstention_with_evidence": share(ev, lambda r: r["abstained"]),
        "first_token_p50_ms": round(statistics.median(r["first_token_ms"] for r in answered), 1) if answered else None,
        "total_p50_ms": round(statistics.median(r["total_ms"] for r in answered), 1) if answered else None,
        "label_prior_support": share(ev, lambda r: r["label"] == "SUPPORT"),
    }


def report(results: dict[str, Any]) -> str:
    head = (
        "| model | variant | asked as | claims (evidence / none) | verdict acc. | citation acc. (first) "
        "| citation acc. (any) | shown@3 | abstained (no evidence) | abstained (evidence) "
        "| first token p50 | total p50 |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for entry in results.values():
        s = entry["summary"]
        lines.append(
            f"| {entry['model']} | {entry['variant']} | {entry.get('ask_as', 'question')} "
            f"| {s['claims_with_evidence']} / {s['claims_without_evidence']} "
            f"| {s['verdict_accuracy']} | {s['citation_accuracy_first']} | {s['citation_accuracy_any']} "
            f"| {s['shown_at_k']} | {s['abstention_without_evidence']} | {s['abstention_with_evidence']} "
            f"| {s['first_token_p50_ms']:.0f} ms | {s['total_p50_ms']:.0f} ms |"
        )
    return head + "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"])
    parser.add_argument("--variants", nargs="+", choices=["guarded", "bare"], default=["guarded", "bare"])
    parser.add_argument("--limit", type=int, default=60, help="claims with evidence (spread over the id range)")
    parser.add_argument("--nei", type=int, default=20, help="claims without evidence")
    parser.add_argument(
        "--ask-as",
        choices=["question", "claim"],
        default="question",
        help='"Is it true that <claim>?" or the claim as it is (the assistant asks a statement as that question)',
    )
    parser.add_argument("--kb-path", type=Path, default=Path("/tmp/slmkit-scifact/kb"))
    parser.add_argument("--out", type=Path, default=WORK / "qa_scifact.json")
    parser.add_argument("--report", action="store_true", help="print the table of results so far and exit")
    args = parser.parse_args()

    results: dict[str, Any] = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if args.report:
        print(report(results))
        return
    kb = KnowledgeBase(name=KB_NAME, path=args.kb_path)
    started = time.perf_counter()
    ingest = kb.ingest([write_corpus(WORK / "scifact-md")], show_progress=True)
    print(
        f"knowledge base: {kb.chunk_count()} chunks, {ingest.unchanged} files unchanged "
        f"({time.perf_counter() - started:.1f}s)"
    )
    evidence, nei = load_claims()
    evidence, nei = spread(evidence, args.limit), spread(nei, args.nei)
    for model in args.models:
        for variant in args.variants:
            entry = run(kb, model, variant, evidence, nei, args.ask_as)
            entry["ask_as"] = args.ask_as
            results[f"{model}/{variant}" + ("" if args.ask_as == "question" else f"/{args.ask_as}")] = entry
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=1))
            print(json.dumps({k: entry[k] for k in ("model", "variant", "summary")}, indent=1))
    print(report(results))


if __name__ == "__main__":
    main()
