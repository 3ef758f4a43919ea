"""Ingestion throughput: ``KnowledgeBase.ingest`` against the raw floor, and re-ingestion of an unchanged corpus.

In one process, on the same SciFact documents (one ``.md`` file per abstract):

    raw floor   the chunks ``ingest`` produces, split beforehand (untimed), then timed: sentence-transformers
                ``encode`` (packaged all-MiniLM-L6-v2, batch 32) + Chroma ``add`` into a fresh collection
    ingest      ``KnowledgeBase.ingest(folder)`` into a fresh knowledge base, everything timed: walking, hashing,
                loading, splitting, embedding, Chroma, manifest, BM25
    re-ingest   the same call again, nothing changed

The raw floor runs before and after ``ingest`` and the two are averaged, so load from other processes on the
machine shifts both sides alike. Ratios are what to compare across machines, not chunks/s.

    .venv/bin/python benchmarks/retrieval_ingest.py [--docs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from retrieval_data import WORK, corpus, write_corpus

from slmkit.retrieval import KnowledgeBase
from slmkit.retrieval.ingest import chunk_ids
from slmkit.retrieval.loaders import load_file
from slmkit.retrieval.splitting import Splitter
from slmkit.retrieval.store import ChunkStore


def raw_floor(kb: KnowledgeBase, texts: list[str], ids: list[str], metadatas: list[dict], folder) -> float:
    shutil.rmtree(folder, ignore_errors=True)
    store = ChunkStore("raw-floor", folder=folder)
    collection, batch = store.collection, int(store.client.get_max_batch_size())
    model = kb.embedding
    started = time.perf_counter()
    vectors = model.encode(texts)
    for start in range(0, len(ids), batch):
        end = start + batch
        collection.add(ids=ids[start:end], embeddings=vectors[start:end], documents=texts[start:end],
                       metadatas=metadatas[start:end])  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=2000, help="SciFact abstracts to ingest (default 2000)")
    args = parser.parse_args()

    docs = corpus()[: args.docs]
    folder = write_corpus(WORK / f"ingest-{len(docs)}", "md", docs)
    root = WORK / "ingest-bench"
    shutil.rmtree(root, ignore_errors=True)
    kb = KnowledgeBase(name="throughput", path=root / "kb")
    kb.embedding.encode(["warm up the model"])  # loading the model is not ingestion

    counter, _ = kb._token_counter()
    splitter = Splitter(kb.config.chunk_size, kb.config.chunk_overlap, counter)
    chunks = [c for path in sorted(folder.glob("*.md")) for c in splitter.split(load_file(path))]
    texts, ids, metas = [c.page_content for c in chunks], chunk_ids(chunks), [c.metadata for c in chunks]

    load_before = os.getloadavg()[0]
    raw_1 = raw_floor(kb, texts, ids, metas, root / "raw-1")
    report = kb.ingest([folder], show_progress=False)
    raw_2 = raw_floor(kb, texts, ids, metas, root / "raw-2")
    again = kb.ingest([folder], show_progress=False)
    assert report.chunks_embedded == len(chunks), (report.chunks_embedded, len(chunks))
    assert again.unchanged == len(docs)
    assert again.chunks_embedded == 0

    floor = (raw_1 + raw_2) / 2
    n = len(chunks)
    print(f"{len(docs)} documents, {n} chunks; load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"raw floor (encode + Chroma add): {raw_1:.1f}s and {raw_2:.1f}s -> {n / floor:.1f} chunks/s")
    print(f"KnowledgeBase.ingest:            {report.seconds:.1f}s -> {n / report.seconds:.1f} chunks/s")
    print(f"ingest / raw floor throughput:   {floor / report.seconds:.3f}x")
    print(
        f"re-ingest unchanged:             {again.seconds:.2f}s = {again.seconds / report.seconds:.4f}x first ingestion"
    )


if __name__ == "__main__":
    main()
