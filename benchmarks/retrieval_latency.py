"""Query latency of the hybrid retriever, p50/p95, with its parts, at SciFact size and at >= 100,000 chunks.

Parts, timed separately on the same queries (SciFact train claims), as wall-clock time and as CPU time of this
process (on a machine shared with other jobs, wall-clock time measures the queue for a core as much as the work;
CPU time counts both of torch's threads, so on an idle 2-core machine wall-clock is at most about that):

    embed    the query through all-MiniLM-L6-v2
    dense    Chroma nearest-neighbour search (fetch_k candidates)
    bm25     bm25s search (fetch_k candidates)
    hybrid   ``HybridRetriever.search(query, k=10)``: all of the above, plus fetching candidates, exact scores,
             fusion, thresholds, merging and de-duplication

Scale-up: ten copies of SciFact (each abstract's sentences shuffled per copy, so BM25's posting lists grow tenfold
with realistic text) ingested through ``KnowledgeBase.ingest``. Their vectors come from a seeded fake embedder:
embedding a million sentences with MiniLM on this CPU would take hours, and nearest-neighbour search cost
depends on the count and dimension of vectors, not on their meaning. Queries are embedded with the real model.

    .venv/bin/python benchmarks/retrieval_latency.py [--queries N] [--copies N]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import time
from collections.abc import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from retrieval_data import WORK, claims, corpus, percentile, sample, write_corpus

from slmkit.retrieval import KnowledgeBase, SentenceTransformerEmbeddings


class ScaleEmbedding(SentenceTransformerEmbeddings):
    """MiniLM's tokenizer (so chunks match the real ones) and query vectors; seeded unit vectors for documents."""

    def encode(self, texts: list[str]) -> np.ndarray:
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
            rows.append(np.random.default_rng(seed).standard_normal(384, dtype="float32"))
        vectors = np.stack(rows)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def embed_query(self, text: str) -> list[float]:
        return SentenceTransformerEmbeddings.encode(self, [text])[0].tolist()


def write_copies(copies: int):
    docs = corpus()
    folder = WORK / f"scifact-x{copies}"
    expected = len(docs) * copies
    if folder.is_dir() and sum(1 for _ in folder.rglob("*.md")) == expected:
        return folder
    for copy in range(copies):
        rng = random.Random(copy)
        shuffled = []
        for doc in docs:
            sentences = doc["text"].split(". ")
            if copy:
                rng.shuffle(sentences)
            shuffled.append({"id": doc["id"], "title": doc["title"], "text": ". ".join(sentences)})
        write_corpus(folder / f"copy{copy}", "md", shuffled)
    return folder


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall-clock ms, CPU ms of this process): on a shared machine the second is what the work itself costs."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


def measure(kb: KnowledgeBase, queries: list[str]) -> dict[str, list[tuple[float, float]]]:
    retriever = kb.as_retriever()
    n = retriever.fetch_k
    for q in queries[:10]:  # warm caches, load the model and the BM25 index
        retriever.search(q, k=10)
    times: dict[str, list[tuple[float, float]]] = {"embed": [], "dense": [], "bm25": [], "hybrid": []}
    for q in queries:
        vector = kb.embed_query(q)
        times["embed"].append(timed(lambda q=q: kb.embed_query(q)))
        times["dense"].append(timed(lambda vector=vector: kb.dense_search(vector, n)))
        times["bm25"].append(timed(lambda q=q: kb.bm25_search(q, n)))
        times["hybrid"].append(timed(lambda q=q: retriever.search(q, k=10)))
    return times


def show(label: str, kb: KnowledgeBase, times: dict[str, list[tuple[float, float]]]) -> None:
    print(f"\n{label}: {kb.chunk_count()} chunks; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'part':<8} {'wall p50':>9} {'wall p95':>9} {'CPU p50':>9} {'CPU p95':>9}   (ms)")
    for part, pairs in times.items():
        wall, cpu = [w for w, _ in pairs], [c for _, c in pairs]
        print(f"{part:<8} {percentile(wall, 50):>9.1f} {percentile(wall, 95):>9.1f} "
              f"{percentile(cpu, 50):>9.1f} {percentile(cpu, 95):>9.1f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--copies", type=int, default=10)
    args = parser.parse_args()
    queries = [text for _, text, _ in sample(claims(), args.queries)]

    small = KnowledgeBase(name="scifact-md-256-32", path=WORK / "kb")  # built by retrieval_scifact.py
    small.ingest([write_corpus(WORK / "scifact-md", "md")], show_progress=True)
    show("SciFact size (all-MiniLM-L6-v2 vectors)", small, measure(small, queries))

    big = KnowledgeBase(name=f"scifact-x{args.copies}", path=WORK / "kb", embedding=ScaleEmbedding())
    report = big.ingest([write_copies(args.copies)], show_progress=True)
    if report.chunks_embedded:
        print(f"scale-up ingested in {report.seconds:.0f}s")
    show(f"Scale-up x{args.copies} (seeded vectors, real query embeddings)", big, measure(big, queries))


if __name__ == "__main__":
    main()
