"""SciFact nDCG@10 and recall@10 of the hybrid retriever with and without the cross-encoder reranker.

Same knowledge base as ``retrieval_scifact.py`` (one ``<id>.md`` file per abstract, default settings and
all-MiniLM-L6-v2), kept in its own folder (``--kb-path``) so this never shares an embedded Chroma store with another
process. Per train claim (809, halves A/B interleaved as in ``retrieval_scifact.py``):

    hybrid           kb.as_retriever().invoke(claim, k=10)
    rerank N, L      kb.as_retriever(rerank_top_n=N, reranker=CrossEncoderReranker(max_length=L)).invoke(claim, k=10)

Documents rank where their best passage ranks. Each (claim, chunk) pair is scored once per max_length (the
reranker scores pairs one at a time, so the logit does not depend on the other candidates); smaller N reuse the
logits of the largest through the same retriever code, and a pair that fits the shorter max_length is scored
once for both. ``ms p50`` times the largest N at the first max_length (its calls are uncached).

    .venv/bin/python benchmarks/rerank_scifact.py --top-n 10 20 30 --max-length 512 256 [--limit N] [--docs N]

``--docs N`` (on a busy machine: ingesting all 5,183 abstracts takes ~30 minutes of both cores) uses a corpus of
N abstracts: every abstract relevant to the claims evaluated, the rest a seeded sample of the others. Fewer
distractors make retrieval easier, so compare settings within one run, not with ``retrieval_scifact.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rerank_squad import CachedReranker
from retrieval_data import WORK, claims, corpus, from_documents, ndcg, recall, write_corpus

from slmkit.retrieval import KnowledgeBase


def subset(data: list[tuple[str, str, set[str]]], size: int, seed: int = 0) -> Path:
    """A folder of ``size`` abstracts: those relevant to ``data``, then a seeded sample of the others."""
    docs = corpus()
    relevant = set().union(*(rel for _, _, rel in data))
    others = [d for d in docs if d["id"] not in relevant]
    picked = [d for d in docs if d["id"] in relevant]
    picked += random.Random(seed).sample(others, max(0, min(size - len(picked), len(others))))
    return write_corpus(WORK / f"scifact-md-subset-{size}-{len(data)}", "md", picked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--top-n", type=int, nargs="+", default=[10, 20, 30])
    parser.add_argument("--max-length", type=int, nargs="+", default=[512])
    parser.add_argument("--limit", type=int, default=None, help="first N claims only")
    parser.add_argument("--docs", type=int, default=None, help="a corpus of N abstracts (see above)")
    parser.add_argument("--kb-path", type=Path, default=WORK / "rerank" / "kb")
    parser.add_argument("--out", type=Path, default=WORK / "rerank_scifact.json")
    args = parser.parse_args()

    data = claims(args.limit)
    if args.docs:
        folder, name = subset(data, args.docs), f"scifact-subset-{args.docs}-{len(data)}"
    else:
        folder, name = write_corpus(WORK / "scifact-md"), "scifact-md-256-32"
    kb = KnowledgeBase(name=name, path=args.kb_path)
    report = kb.ingest([folder], show_progress=True)
    print(f"knowledge base: {kb.chunk_count()} chunks ({report.seconds:.0f}s, {report.unchanged} unchanged)")
    tops = sorted(args.top_n, reverse=True)
    retrievers = {"hybrid": kb.as_retriever()}
    for length in args.max_length:
        reranker = CachedReranker(max_length=length)
        for n in tops:
            retrievers[f"rerank N={n} L={length}"] = kb.as_retriever(rerank_top_n=n, reranker=reranker)
    runs: dict[str, list[tuple[list[str], set[str]]]] = {name: [] for name in retrievers}
    ms: dict[str, list[float]] = {"hybrid": [], f"rerank N={tops[0]} L={args.max_length[0]}": []}
    started = time.perf_counter()
    for i, (_, text, relevant) in enumerate(data, 1):
        for name, retriever in retrievers.items():
            t = time.perf_counter()
            docs = retriever.invoke(text, k=10)
            if name in ms:
                ms[name].append((time.perf_counter() - t) * 1000)
            runs[name].append((from_documents(docs), relevant))
        if i % 100 == 0:
            print(f"  {i}/{len(data)} claims, {time.perf_counter() - started:.0f}s", flush=True)

    halves = {"all": slice(None), "half A": slice(0, None, 2), "half B": slice(1, None, 2)}
    results = {
        name: {
            half: {
                "ndcg@10": round(statistics.mean(ndcg(r, rel) for r, rel in run[part]), 4),
                "recall@10": round(statistics.mean(recall(r, rel, 10) for r, rel in run[part]), 4),
            }
            for half, part in halves.items()
        }
        | ({"ms_p50": round(statistics.median(ms[name]), 1)} if ms.get(name) else {})
        for name, run in runs.items()
    }
    print(f"\nSciFact train claims: {len(data)}; {kb.chunk_count()} chunks")
    print("| setting | nDCG@10 | R@10 | nDCG@10 half A / half B | ms p50 |\n|---|---|---|---|---|")
    for name, r in results.items():
        a = r["all"]
        print(
            f"| {name} | {a['ndcg@10']:.4f} | {a['recall@10']:.4f} | "
            f"{r['half A']['ndcg@10']:.4f} / {r['half B']['ndcg@10']:.4f} | {r.get('ms_p50', '')} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"claims": len(data), "chunks": kb.chunk_count(), "results": results}, indent=1))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
