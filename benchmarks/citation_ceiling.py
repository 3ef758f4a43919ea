"""How often the assistant's top-ranked source is the evidence, and whether re-scoring the top sources helps.

Citation accuracy on SciFact cannot beat the retriever by much: a 135M model mostly restates the claim, and a
restatement cites the highest-ranked source that covers it. This measures that ceiling on every train claim with
evidence, through the assistant's own retrieval path (the question as ``qa_scifact.py`` asks it, ``one_per_source``
over ``3k`` chunks), and compares re-scoring the top 5 sources by:

    fused       the retriever's own score (BM25 + MiniLM, min-max fused): the ranking the assistant uses
    cosine      MiniLM cosine of the question and the best chunk
    sentence    MiniLM cosine of the claim and the source's best-matching sentence
    coverage    share of the question's terms (``citations.terms``) in the source
    fused + x   fused + 0.2 * x (the best weight of 0.1-1.0 on these claims; halves reported to show the spread)
    slm         (--slm N) SmolLM2-135M log-likelihood of the claim after the source, on N claims (slow: ~4 s/claim)

    .venv/bin/python benchmarks/citation_ceiling.py [--kb-path benchmarks/out/kb] [--slm 200]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from qa_scifact import KB_NAME, load_claims, question
from retrieval_data import WORK, doc_id, write_corpus

from slmkit.agent.citations import coverage, terms
from slmkit.agent.prompts import one_per_source
from slmkit.core.embeddings import SentenceTransformerEmbeddings
from slmkit.guards.text import split_sentences
from slmkit.retrieval import KnowledgeBase

TOP = 5


def features(kb: KnowledgeBase, claims: list[dict], slm_claims: int) -> list[dict]:
    embedder = SentenceTransformerEmbeddings()
    retriever = kb.as_retriever(k=3)
    scorer = None
    if slm_claims:
        from slmkit.agent.grounding_scorer import local_grounding_scorer

        scorer = local_grounding_scorer()
    rows = []
    for i, claim in enumerate(claims):
        asked = question(claim["text"])
        sources = one_per_source(retriever.invoke(asked, k=3 * TOP), TOP)
        vector = np.asarray(embedder.embed_query(claim["text"]))
        row: dict = {"evidence": set(claim["evidence"]), "docs": [doc_id(s.metadata["source"]) for s in sources]}
        row["fused"] = [s.metadata["score"] for s in sources]
        row["cosine"] = [s.metadata["relevance"] for s in sources]
        row["coverage"] = [coverage(terms(asked), terms(s.page_content)) for s in sources]
        row["sentence"] = []
        for source in sources:
            sentences = [s.text for s in split_sentences(source.page_content)] or [source.page_content]
            row["sentence"].append(float(np.max(np.asarray(embedder.embed_documents(sentences)) @ vector)))
        if scorer is not None and i < slm_claims:
            row["slm"] = [
                float(
                    np.mean(
                        [
                            lp
                            for _, lp in scorer.continuation_logprobs(
                                s.page_content[:1200] + "\n\nClaim based on this abstract:", " " + claim["text"]
                            )
                        ]
                    )
                )
                for s in sources
            ]
        rows.append(row)
        if (i + 1) % 100 == 0:
            print(f"{i + 1}/{len(claims)} claims", flush=True)
    return rows


def top1(rows: list[dict], score) -> float:
    hits = [r["docs"][int(np.argmax(score(r) - 1e-9 * np.arange(len(r["docs"]))))] in r["evidence"] for r in rows]
    return float(np.mean(hits))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kb-path", type=Path, default=WORK / "kb")
    parser.add_argument("--slm", type=int, default=0, help="also score the first N claims with SmolLM2-135M")
    args = parser.parse_args()
    kb = KnowledgeBase(name=KB_NAME, path=args.kb_path)
    kb.ingest([write_corpus(WORK / "scifact-md")], show_progress=True)
    claims, _ = load_claims()
    rows = [r for r in features(kb, claims, args.slm) if r["docs"]]
    halves = (rows[0::2], rows[1::2])
    shown = np.mean([any(d in r["evidence"] for d in r["docs"][:3]) for r in rows])
    print(f"\n{len(rows)} claims with evidence; an evidence abstract among the 3 shown: {shown:.3f}\n")
    print("| ranking of the top 5 sources | top-ranked is evidence | halves |\n|---|---|---|")
    variants = {name: (lambda r, n=name: np.asarray(r[n])) for name in ("fused", "cosine", "sentence", "coverage")}
    for extra in ("cosine", "sentence", "coverage"):
        variants[f"fused + {extra}"] = lambda r, e=extra: np.asarray(r["fused"]) + 0.2 * np.asarray(r[e])
    for name, score in variants.items():
        print(f"| {name} | {top1(rows, score):.3f} | {top1(halves[0], score):.3f} / {top1(halves[1], score):.3f} |")
    if args.slm:
        scored = [r for r in rows if "slm" in r]
        print(
            f"| slm ({len(scored)} claims) | {top1(scored, lambda r: np.asarray(r['slm'])):.3f} | "
            f"fused on the same claims: {top1(scored, variants['fused']):.3f} |"
        )


if __name__ == "__main__":
    main()
