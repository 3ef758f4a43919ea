"""SciFact for the retrieval benchmarks: corpus as files, claims with relevant documents, ranking metrics.

The corpus (BEIR SciFact, 5,183 abstracts) is written as one file per document, ``<doc id>.md`` holding
``# <title>`` and the abstract, so benchmarks go through the same loaders and splitter as users' folders.
``--format txt`` writes ``<doc id>.txt`` with the title as the first line instead (no heading handling).
Claims are the train split (809 claims, deduplicated); BEIR's test split is not in the shared data.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import random
from collections.abc import Iterable, Sequence
from pathlib import Path

from langchain_core.documents import Document

SCIFACT = Path(os.environ.get("SCIFACT_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"))
WORK = Path(os.environ.get("SLMKIT_BENCH_DIR", Path(__file__).resolve().parent / "out"))


def corpus() -> list[dict[str, str]]:
    with gzip.open(SCIFACT / "corpus.jsonl.gz", "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    return [{"id": r["_id"], "title": r["title"], "text": " ".join(r["sentences"])} for r in rows]


def write_corpus(folder: Path, fmt: str = "md", docs: Sequence[dict[str, str]] | None = None) -> Path:
    """One file per document (skipped when the folder is already complete)."""
    docs = corpus() if docs is None else docs
    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob(f"*.{fmt}"))) == len(docs):
        return folder
    for doc in docs:
        head = f"# {doc['title']}" if fmt == "md" else doc["title"]
        (folder / f"{doc['id']}.{fmt}").write_text(f"{head}\n\n{doc['text']}\n", encoding="utf-8")
    return folder


def claims(limit: int | None = None) -> list[tuple[str, str, set[str]]]:
    """(claim id, text, relevant doc ids) of the train claims, in id order."""
    merged: dict[str, tuple[str, set[str]]] = {}
    with (SCIFACT / "train_claims.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            merged.setdefault(row["_id"], (row["text"], set()))[1].update(row["relevant_doc_ids"])
    ordered = [(cid, text, rel) for cid, (text, rel) in sorted(merged.items(), key=lambda kv: int(kv[0]))]
    return ordered[:limit] if limit else ordered


def sample(items: Sequence[tuple[str, str, set[str]]], n: int, seed: int = 0) -> list[tuple[str, str, set[str]]]:
    return random.Random(seed).sample(list(items), min(n, len(items)))


def doc_id(source: str) -> str:
    return Path(source).stem


def ranking(sources: Iterable[str], limit: int = 1000) -> list[str]:
    """Document ids in order of first appearance (a document ranks where its best chunk does)."""
    seen: dict[str, None] = {}
    for source in sources:
        seen.setdefault(doc_id(source), None)
        if len(seen) >= limit:
            break
    return list(seen)


def from_documents(docs: Sequence[Document]) -> list[str]:
    return ranking(d.metadata["source"] for d in docs)


def ndcg(ranked: Sequence[str], relevant: set[str], k: int = 10) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(ranked[:k]) if d in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return dcg / ideal


def recall(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    return len(set(ranked[:k]) & relevant) / len(relevant)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]
