"""Cross-encoder reranking on SQuAD 2.0: is the gold passage ranked first more often, at what cost, and does the
reranker's score tell answerable from unanswerable questions?

Knowledge base: the 8 SQuAD dev articles (``squad_data.knowledge_base``, default settings, all-MiniLM-L6-v2).
Questions: a seeded sample of ``--n`` answerable and ``--n`` unanswerable ones. Per question and setting, the real
retriever path (``HybridRetriever.search(question, k=5)``):

    hybrid                      kb.as_retriever()                                  (what the assistant uses today)
    rerank N, max_length L      kb.as_retriever(rerank_top_n=N, reranker=CrossEncoderReranker(max_length=L))

    rank-1        the first passage holds the gold answer in its paragraph's words (``squad_data.holds_gold``)
    recall@k      one of the first k passages does (answerable questions only)
    AUROC         the first passage's ``rerank_score`` (0 when nothing is returned) as a score for "answerable",
                  over answerable vs unanswerable questions; the hybrid's top cosine ``relevance`` beside it
    ms p50        wall time of ``search`` per query, on the first ``--timing-n`` answerable questions, settings
                  interleaved (order reversed every other question); the model is loaded before timing

Quality runs score each distinct model input once: the reranker scores pairs one at a time (batch_size 1), so a
pair's logit does not depend on the other candidates; top N = 10 and 20 reuse the logits computed for top 30
through the same retriever code, and a pair shorter than 256 tokens is the same input at both max_lengths.
Timing runs use uncached rerankers. ``--phase quality`` saves rows as it goes (beside ``--out``) and resumes.

    .venv/bin/python benchmarks/rerank_squad.py --n 300 --timing-n 60 [--kb-path DIR] [--phase quality|timing]

``--phase timing`` (later, on a quieter machine) reads the saved rows back, times, and writes the summary;
``--phase report`` prints the table again from the saved rows and times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from squad_data import WORK, holds_gold, knowledge_base, load, sample

from slmkit.retrieval import HybridRetriever, KnowledgeBase
from slmkit.retrieval.rerank import CrossEncoderReranker, _encoder

TOP_N = (10, 20, 30)
MAX_LENGTHS = (256, 512)
K = 5


_LOGITS: dict[tuple[str, tuple[int, ...], tuple[int, ...]], float] = {}
"""Logit per (model, token ids, token types) pair, shared by every max_length: a pair shorter than 256 tokens is
the same input at 256 and 512."""


class CachedReranker(CrossEncoderReranker):
    """Scores each distinct model input once; with batch_size 1 the cached logit is the one a fresh call returns."""

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        tokenizer = _encoder(self.model, self.max_length).tokenizer
        keys = [
            (self.model, tuple(e.ids), tuple(e.type_ids)) for e in tokenizer.encode_batch([(query, t) for t in texts])
        ]
        missing = {key: text for key, text in zip(keys, texts, strict=True) if key not in _LOGITS}
        if missing:
            for key, logit in zip(missing, super().score(query, list(missing.values())), strict=True):
                _LOGITS[key] = float(logit)
        return np.array([_LOGITS[key] for key in keys], dtype="float32")


def settings(kb: KnowledgeBase, *, cached: bool) -> dict[str, HybridRetriever]:
    """Name -> retriever; rerank settings per max_length share one reranker (so N=10/20 reuse N=30's logits)."""
    out = {"hybrid": kb.as_retriever()}
    for length in MAX_LENGTHS:
        reranker = (CachedReranker if cached else CrossEncoderReranker)(max_length=length)
        for n in sorted(TOP_N, reverse=True):
            out[f"rerank N={n} L={length}"] = kb.as_retriever(rerank_top_n=n, reranker=reranker)
    return out


def auroc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """P(score of a random positive > score of a random negative), ties counted half."""
    pos, neg = np.asarray(positive, dtype=float), np.asarray(negative, dtype=float)
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def declined_at_kept(answerable: list[float], unanswerable: list[float]) -> dict[str, dict[str, float]]:
    """A decline rule "score below t" at the t that keeps 95 / 90 / 80% of answerable questions: t and the share of
    unanswerable questions it declines (the operating points an assistant would pick from)."""
    out = {}
    for kept in (0.95, 0.9, 0.8):
        t = float(np.quantile(answerable, 1 - kept))
        out[str(kept)] = {"t": round(t, 4), "unanswerable_declined": round(float(np.mean(np.less(unanswerable, t))), 4)}
    return out


def quality(kb: KnowledgeBase, questions: list[Any], saved: Path) -> dict[str, list[dict[str, Any]]]:
    """Rows per setting and question; saved every 25 questions, and a re-run resumes from them."""
    retrievers = settings(kb, cached=True)
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in retrievers}
    if saved.is_file():
        rows = json.loads(saved.read_text())
    done = {r["id"] for r in rows["hybrid"]}
    started = time.perf_counter()
    for i, q in enumerate(questions, 1):
        if q.id in done:
            continue
        for name, retriever in retrievers.items():
            docs = retriever.search(q.question, k=K)
            rows[name].append(
                {
                    "id": q.id,
                    "answerable": not q.impossible,
                    "gold": [holds_gold(d.page_content, q) for d in docs],
                    "top_rerank": docs[0].metadata.get("rerank_score", 0.0) if docs else 0.0,
                    "top_relevance": docs[0].metadata["relevance"] if docs else 0.0,
                    "passages": len(docs),
                }
            )
        if i % 25 == 0 or i == len(questions):
            saved.write_text(json.dumps(rows))
            print(f"  quality: {i}/{len(questions)} questions, {time.perf_counter() - started:.0f}s", flush=True)
    return rows


def timing(kb: KnowledgeBase, questions: list[Any]) -> dict[str, list[float]]:
    retrievers = settings(kb, cached=False)
    for retriever in retrievers.values():  # load the models and warm the caches, untimed
        retriever.search("warm-up question about the Normans", k=K)
    times: dict[str, list[float]] = {name: [] for name in retrievers}
    names = list(retrievers)
    for i, q in enumerate(questions):
        for name in names if i % 2 == 0 else names[::-1]:
            started = time.perf_counter()
            retrievers[name].search(q.question, k=K)
            times[name].append((time.perf_counter() - started) * 1000)
    return times


def summarise(rows: dict[str, list[dict[str, Any]]], times: dict[str, list[float]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    base = times.get("hybrid")
    for name, runs in rows.items():
        answerable = [r for r in runs if r["answerable"]]
        unanswerable = [r for r in runs if not r["answerable"]]
        entry: dict[str, Any] = {
            "answerable": len(answerable),
            "rank1": round(statistics.mean(r["gold"][:1] == [True] for r in answerable), 4),
            **{f"recall@{k}": round(statistics.mean(any(r["gold"][:k]) for r in answerable), 4) for k in (1, 3, 5)},
            "no_passage": round(statistics.mean(r["passages"] == 0 for r in answerable), 4),
        }
        if name != "hybrid":
            first = {r["id"]: r["gold"][:1] == [True] for r in rows["hybrid"]}
            entry["rank1_gained"] = sum(r["gold"][:1] == [True] and not first[r["id"]] for r in answerable)
            entry["rank1_lost"] = sum(r["gold"][:1] != [True] and first[r["id"]] for r in answerable)
        if unanswerable:
            key = "top_relevance" if name == "hybrid" else "top_rerank"
            entry["auroc"] = round(auroc([r[key] for r in answerable], [r[key] for r in unanswerable]), 4)
            found = [r[key] for r in answerable if r["gold"][:1] == [True]]
            entry["auroc_gold_first"] = round(auroc(found, [r[key] for r in unanswerable]), 4) if found else None
            entry["signal"] = key
            entry["declined_at_kept"] = declined_at_kept([r[key] for r in answerable], [r[key] for r in unanswerable])
        if times.get(name):
            entry["ms_p50"] = round(statistics.median(times[name]), 1)
            if base and name != "hybrid":
                entry["added_ms_p50"] = round(statistics.median(np.subtract(times[name], base)), 1)
        out[name] = entry
    return out


def table(summary: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| setting | rank-1 (gained / lost vs hybrid) | R@3 | R@5 | AUROC answerable vs not (gold first vs not) "
        "| unanswerable declined at 95 / 90 / 80% answerable kept | ms p50 (added) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, e in summary.items():
        ms = f"{e['ms_p50']:.0f}" if "ms_p50" in e else ""
        ms += f" (+{e['added_ms_p50']:.0f})" if "added_ms_p50" in e else ""
        roc = f"{e['auroc']:.3f} ({e['auroc_gold_first']:.3f}) [{e['signal']}]" if "auroc" in e else ""
        flips = f" (+{e['rank1_gained']} / -{e['rank1_lost']})" if "rank1_gained" in e else ""
        kept = " / ".join(f"{v['unanswerable_declined']:.3f}" for v in e.get("declined_at_kept", {}).values())
        lines.append(
            f"| {name} | {e['rank1']:.3f}{flips} | {e['recall@3']:.3f} | {e['recall@5']:.3f} | {roc} | {kept} | {ms} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300, help="answerable questions (and as many unanswerable)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timing-n", type=int, default=60, help="answerable questions timed per setting")
    parser.add_argument("--kb-path", type=Path, default=None, help="root of the SQuAD knowledge base copy")
    parser.add_argument("--out", type=Path, default=WORK / "rerank_squad.json")
    parser.add_argument("--phase", choices=["all", "quality", "timing", "report"], default="all")
    args = parser.parse_args()

    started = time.perf_counter()
    kb = knowledge_base(path=args.kb_path)
    print(f"knowledge base: {kb.chunk_count()} chunks ({time.perf_counter() - started:.0f}s)", flush=True)
    _, questions = load()
    picked = sample(questions, 2 * args.n, seed=args.seed)
    saved = args.out.with_suffix(".rows.json")
    saved.parent.mkdir(parents=True, exist_ok=True)
    rows = json.loads(saved.read_text()) if args.phase == "timing" else quality(kb, picked, saved)
    if args.phase == "quality":
        print(table(summarise(rows, {})))
        print(f"rows written to {saved}")
        return
    timed = [q for q in picked if not q.impossible][: args.timing_n]
    if args.phase == "report":
        times = json.loads(args.out.read_text())["ms"]
    else:
        print(f"timing {len(timed)} questions x {len(rows)} settings", flush=True)
        times = timing(kb, timed) if timed else {}
    summary = summarise(rows, times)
    print(table(summary))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"n": args.n, "seed": args.seed, "chunks": kb.chunk_count(), "summary": summary, "ms": times})
    )
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
