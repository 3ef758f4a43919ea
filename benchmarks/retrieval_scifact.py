"""Retrieval quality on SciFact: nDCG@10, recall@10 and recall@100 for BM25 alone, dense alone and hybrid.

Everything goes through ``KnowledgeBase.ingest`` (one file per abstract) and the packaged all-MiniLM-L6-v2:

    BM25    kb.bm25_search(claim, 1000)                           chunks -> documents by best chunk
    dense   kb.dense_search(kb.embed_query(claim), 1000)          same
    hybrid  kb.as_retriever().invoke(claim, k=10)  for nDCG@10 and recall@10 (the defaults a user gets)
            kb.as_retriever().invoke(claim, k=100) for recall@100

Claims: SciFact train (809), split into two interleaved halves to show how much figures move between samples.

    .venv/bin/python benchmarks/retrieval_scifact.py [--format md|txt] [--limit N] [--chunk-size N --overlap N]

The knowledge base is kept in benchmarks/out/ (re-runs only re-ingest what changed).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from statistics import mean

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from retrieval_data import WORK, claims, from_documents, ndcg, ranking, recall, write_corpus

from slmkit.retrieval import KnowledgeBase, KnowledgeBaseConfig


def metrics(runs: list[tuple[list[str], list[str], set[str]]]) -> dict[str, float]:
    """runs: (ranking for @10, ranking for @100, relevant) per claim."""
    return {
        "ndcg@10": round(mean(ndcg(r10, rel) for r10, _, rel in runs), 4),
        "recall@10": round(mean(recall(r10, rel, 10) for r10, _, rel in runs), 4),
        "recall@100": round(mean(recall(r100, rel, 100) for _, r100, rel in runs), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", choices=["md", "txt"], default="md")
    parser.add_argument("--limit", type=int, default=None, help="first N claims only")
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--overlap", type=int, default=None)
    args = parser.parse_args()

    config = KnowledgeBaseConfig()
    if args.chunk_size:
        config = KnowledgeBaseConfig(chunk_size=args.chunk_size, chunk_overlap=args.overlap or 0)
    folder = write_corpus(WORK / f"scifact-{args.format}", args.format)
    kb = KnowledgeBase(
        name=f"scifact-{args.format}-{config.chunk_size}-{config.chunk_overlap}", path=WORK / "kb", config=config
    )
    report = kb.ingest([folder], show_progress=True)
    print(
        f"ingested: {len(report.added) + len(report.updated)} files, {report.chunks_embedded} chunks embedded, "
        f"{report.unchanged} unchanged, {report.seconds:.0f}s; {kb.chunk_count()} chunks in the knowledge base"
    )

    data = claims(args.limit)
    # Each claim is embedded once, in one batch, and the retriever is handed those vectors: the same vectors it
    # would compute itself (up to float rounding), without embedding every claim five times over.
    vectors = dict(zip([t for _, t, _ in data], kb.embedding.embed_documents([t for _, t, _ in data]), strict=True))
    kb.embed_query = vectors.__getitem__  # type: ignore[method-assign]
    stored = kb.vectorstore.get(include=["metadatas"])
    source_of = dict(zip(stored["ids"], (m["source"] for m in stored["metadatas"]), strict=True))
    retriever = kb.as_retriever()
    loose = kb.as_retriever(min_relevance=None, min_top_relevance=None)
    runs: dict[str, list[tuple[list[str], list[str], set[str]]]] = {
        "bm25": [], "dense": [], "hybrid": [], "hybrid, no thresholds": []
    }  # fmt: skip
    started = time.perf_counter()
    for _, text, relevant in data:
        lexical = ranking(source_of[i] for i, _ in kb.bm25_search(text, 1000))
        runs["bm25"].append((lexical, lexical, relevant))
        dense = ranking(source_of[i] for i, _ in kb.dense_search(vectors[text], 1000))
        runs["dense"].append((dense, dense, relevant))
        runs["hybrid"].append(
            (from_documents(retriever.invoke(text, k=10)), from_documents(retriever.invoke(text, k=100)), relevant)
        )
        runs["hybrid, no thresholds"].append(
            (from_documents(loose.invoke(text, k=10)), from_documents(loose.invoke(text, k=100)), relevant)
        )
    seconds = time.perf_counter() - started

    halves = {"all": slice(None), "half A": slice(0, None, 2), "half B": slice(1, None, 2)}
    results = {name: {h: metrics(r[s]) for h, s in halves.items()} for name, r in runs.items()}
    print(
        f"\nSciFact train claims: {len(data)}; {kb.chunk_count()} chunks; format {args.format}; "
        f"chunk_size {config.chunk_size}, overlap {config.chunk_overlap}; {seconds:.0f}s for all queries"
    )
    print(f"{'method':<24} {'nDCG@10':>8} {'R@10':>7} {'R@100':>7}   nDCG@10 half A / half B")
    for name, by_half in results.items():
        m = by_half["all"]
        print(
            f"{name:<24} {m['ndcg@10']:>8.4f} {m['recall@10']:>7.4f} {m['recall@100']:>7.4f}   "
            f"{by_half['half A']['ndcg@10']:.4f} / {by_half['half B']['ndcg@10']:.4f}"
        )
    out = WORK / f"scifact-{args.format}-{config.chunk_size}-{config.chunk_overlap}.json"
    out.write_text(json.dumps({"claims": len(data), "chunks": kb.chunk_count(), "results": results}, indent=2))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
