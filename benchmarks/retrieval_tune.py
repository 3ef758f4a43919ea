"""How the retrieval defaults were chosen: chunking, BM25 parameters, fusion and thresholds, on SciFact train.

Works on arrays rather than through the knowledge base, so dozens of variants cost seconds once the chunks of a
configuration are embedded (cached in benchmarks/out/tune/). The pieces are the package's own: ``Splitter`` with
MiniLM token counts, ``bm25.terms``/``BM25Index``, the packaged all-MiniLM-L6-v2, ``fusion.minmax``. Documents rank
where their best chunk ranks. Every row also shows nDCG@10 on the two interleaved halves of the claims.

    .venv/bin/python benchmarks/retrieval_tune.py chunking              # configurations 4000/0, 256/32, 128/32
    .venv/bin/python benchmarks/retrieval_tune.py fusion --config 256/32
    .venv/bin/python benchmarks/retrieval_tune.py bm25 --config 256/32
    .venv/bin/python benchmarks/retrieval_tune.py thresholds --config 256/32

``4000/0`` is one chunk per abstract (the model truncates it at 256 tokens, as in BEIR's MiniLM figure).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
from collections.abc import Callable
from statistics import mean

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from langchain_core.documents import Document
from retrieval_data import SCIFACT, WORK, claims, corpus, ndcg, ranking, recall

from slmkit.retrieval.bm25 import BM25Index, terms
from slmkit.retrieval.embeddings import SentenceTransformerEmbeddings
from slmkit.retrieval.fusion import minmax, rrf
from slmkit.retrieval.splitting import Splitter

CACHE = WORK / "tune"
EMB = SentenceTransformerEmbeddings(batch_size=64)
CLAIMS = claims()
RELEVANT = [rel for _, _, rel in CLAIMS]
HALVES = (range(0, len(CLAIMS), 2), range(1, len(CLAIMS), 2))


def chunked(config: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(document id of each chunk, chunk vectors, chunk texts) for 'size/overlap', embedded once and cached."""
    CACHE.mkdir(parents=True, exist_ok=True)
    size, overlap = map(int, config.split("/"))
    base = CACHE / config.replace("/", "_")
    if not base.with_suffix(".npy").exists():
        splitter = Splitter(size, overlap, EMB.count_tokens)
        chunks = []
        for doc in corpus():
            md = Document(page_content=f"# {doc['title']}\n\n{doc['text']}", metadata={"format": "markdown"})
            chunks += [(doc["id"], c.page_content) for c in splitter.split_one(md)]
        base.with_suffix(".pkl").write_bytes(pickle.dumps(chunks))
        np.save(base.with_suffix(".npy"), EMB.encode([text for _, text in chunks]))
    chunks = pickle.loads(base.with_suffix(".pkl").read_bytes())
    return np.array([doc for doc, _ in chunks]), np.load(base.with_suffix(".npy")), [t for _, t in chunks]


def queries() -> np.ndarray:
    path = CACHE / "claims.npy"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        np.save(path, EMB.encode([text for _, text, _ in CLAIMS]))
    return np.load(path)


def bm25_matrix(texts: list[str], k1: float, b: float) -> np.ndarray:
    index = BM25Index.build([str(i) for i in range(len(texts))], [terms(t) for t in texts], k1=k1, b=b)
    return np.stack([index.scores(text) for _, text, _ in CLAIMS])


def top(scores: np.ndarray, n: int) -> np.ndarray:
    rows = np.argpartition(-scores, n)[:n]
    return rows[np.argsort(-scores[rows], kind="stable")]


def report(label: str, rank_of: Callable[[int], list[str]]) -> dict[str, float]:
    ranked = [rank_of(i) for i in range(len(CLAIMS))]
    scores = [ndcg(r, rel) for r, rel in zip(ranked, RELEVANT, strict=True)]
    row = {
        "ndcg@10": mean(scores),
        "recall@10": mean(recall(r, rel, 10) for r, rel in zip(ranked, RELEVANT, strict=True)),
        "recall@100": mean(recall(r, rel, 100) for r, rel in zip(ranked, RELEVANT, strict=True)),
        "half A": mean(scores[i] for i in HALVES[0]),
        "half B": mean(scores[i] for i in HALVES[1]),
    }
    print(f"{label:<46} {row['ndcg@10']:.4f} {row['recall@10']:.4f} {row['recall@100']:.4f}   "
          f"{row['half A']:.4f} / {row['half B']:.4f}", flush=True)  # fmt: skip
    return row


def hybrid(
    docs: np.ndarray, bm25: np.ndarray, dense: np.ndarray, *, w: float = 0.5, n: int = 50, exact: bool = True,
    source_weight: float = 0.0, method: str = "score",
) -> Callable[[int], np.ndarray]:  # fmt: skip
    """The retriever's fusion on arrays -> chunk rows, best first. ``exact=False`` gives candidates missing from
    a list that list's minimum; ``source_weight`` blends each chunk's normalised score with its document's best."""

    def order_of(q: int) -> np.ndarray:
        lexical, semantic = top(bm25[q], n), top(dense[q], n)
        cand = np.union1d(lexical, semantic)
        if method == "rrf":
            fused_map = rrf([[str(c) for c in lexical], [str(c) for c in semantic]], [w, 1 - w])
            fused = np.array([fused_map[str(c)] for c in cand])
        else:
            signals = []
            for scores, listed in ((bm25[q], lexical), (dense[q], semantic)):
                values = scores[cand].astype("float64")
                if not exact:
                    inside = np.isin(cand, listed)
                    values = np.where(inside, values, values[inside].min())
                norm = minmax(values)
                if source_weight:
                    best: dict[str, float] = {}
                    for d, v in zip(docs[cand], norm, strict=True):
                        best[d] = max(best.get(d, 0.0), v)
                    norm = (1 - source_weight) * norm + source_weight * np.array([best[d] for d in docs[cand]])
                signals.append(norm)
            fused = w * signals[0] + (1 - w) * signals[1]
        return cand[np.argsort(-fused, kind="stable")]

    return order_of


def docs_of(docs: np.ndarray, order_of: Callable[[int], np.ndarray]) -> Callable[[int], list[str]]:
    return lambda i: ranking(docs[order_of(i)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["chunking", "fusion", "bm25", "thresholds"])
    parser.add_argument("--config", default="256/32")
    args = parser.parse_args()
    q = queries()
    print(f"{'variant':<46} nDCG@10 R@10   R@100    nDCG@10 half A / half B")
    results = {}
    configs = ["4000/0", "256/32", "128/32"] if args.what == "chunking" else [args.config]
    for config in configs:
        docs, vectors, texts = chunked(config)
        dense = q @ vectors.T
        bm25 = bm25_matrix(texts, 0.9, 0.4)
        alone = {"bm25": bm25, "dense": dense}
        if args.what == "chunking":
            print(f"-- {config}: {len(texts)} chunks")
            for name, scores in alone.items():
                results[f"{config} {name}"] = report(
                    f"{config} {name} alone", lambda i, s=scores, d=docs: ranking(d[top(s[i], 300)])
                )
            results[f"{config} hybrid"] = report(
                f"{config} hybrid (score, w=0.5)", docs_of(docs, hybrid(docs, bm25, dense))
            )
        elif args.what == "fusion":
            for w in (0.4, 0.5, 0.6):
                results[f"score w={w}"] = report(
                    f"score fusion, bm25 weight {w}", docs_of(docs, hybrid(docs, bm25, dense, w=w))
                )
            results["score inexact"] = report(
                "score fusion, only listed scores", docs_of(docs, hybrid(docs, bm25, dense, exact=False))
            )
            results["rrf"] = report(
                "reciprocal-rank fusion (k=60)", docs_of(docs, hybrid(docs, bm25, dense, method="rrf"))
            )
            for lam in (0.25, 0.5, 1.0):
                results[f"source {lam}"] = report(
                    f"score fusion + doc-level weight {lam}",
                    docs_of(docs, hybrid(docs, bm25, dense, source_weight=lam)),
                )
            for n in (30, 100, 200):
                results[f"fetch {n}"] = report(
                    f"score fusion, {n} candidates per list", docs_of(docs, hybrid(docs, bm25, dense, n=n))
                )
        elif args.what == "bm25":
            for k1 in (0.9, 1.2, 1.5):
                for b in (0.4, 0.6, 0.75, 0.9):
                    matrix = bm25_matrix(texts, k1, b)
                    results[f"k1={k1} b={b} alone"] = report(
                        f"bm25 k1={k1} b={b} alone", lambda i, s=matrix, d=docs: ranking(d[top(s[i], 300)])
                    )
                    results[f"k1={k1} b={b} hybrid"] = report(
                        f"hybrid with bm25 k1={k1} b={b}", docs_of(docs, hybrid(docs, matrix, dense))
                    )
        else:
            thresholds(docs, vectors, dense, bm25)
    if results:
        out = CACHE / f"{args.what}-{args.config.replace('/', '_')}.json"
        out.write_text(json.dumps(results, indent=2))


def thresholds(docs: np.ndarray, vectors: np.ndarray, dense: np.ndarray, bm25: np.ndarray) -> None:
    """Cosine of the best relevant chunk per claim vs the best chunk for off-topic questions (HaluEval QA)."""
    off_path = SCIFACT.parent / "hallucination" / "halueval_qa.jsonl"
    questions = [json.loads(line)["question"] for line in off_path.open(encoding="utf-8")]
    off_top = (EMB.encode(questions) @ vectors.T).max(1)
    best_relevant = np.array([dense[i][np.isin(docs, list(rel))].max() for i, rel in enumerate(RELEVANT)])
    in_top = dense.max(1)
    print(f"{len(questions)} off-topic questions; percentiles 1/5/50 of the claims' best relevant chunk: "
          f"{np.percentile(best_relevant, [1, 5, 50]).round(3)}; of the claims' top chunk: "
          f"{np.percentile(in_top, [1, 5, 50]).round(3)}; of off-topic top chunk 50/90/99: "
          f"{np.percentile(off_top, [50, 90, 99]).round(3)}")  # fmt: skip
    for t in (0.2, 0.25, 0.3, 0.35):
        kept, answered, empty = np.mean(best_relevant >= t), np.mean(in_top >= t), np.mean(off_top < t)
        print(f"t={t}: relevant chunk kept {kept:.3f}; claims with a chunk >= t {answered:.3f}; "
              f"off-topic questions with none (answer []) {empty:.3f}")  # fmt: skip
    order_of = hybrid(docs, bm25, dense)
    for floor in (None, 0.2, 0.25, 0.3):
        report(
            f"hybrid, chunks below cosine {floor} dropped",
            lambda i, t=floor: ranking(docs[[c for c in order_of(i) if t is None or dense[i][c] >= t]]),
        )


if __name__ == "__main__":
    main()
