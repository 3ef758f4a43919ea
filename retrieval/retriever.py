"""``HybridRetriever``: BM25 + dense search over a ``KnowledgeBase``, fused, thresholded and de-duplicated.

One query:

    query -> embed ─┬─> dense top ``fetch_k`` (Chroma) ──┐
                    └─> BM25 top ``fetch_k`` (bm25s) ────┴─> candidates (union)
    candidates -> cosine (Chroma's, or from the stored vector for BM25-only ones) and exact BM25 score for each
               -> nothing if no candidate reaches ``min_top_relevance``
               -> fusion (score or rrf; see ``fusion``) -> drop chunks below ``min_relevance``
               -> (``rerank_top_n``: the best N chunks only, re-ordered by a cross-encoder; see ``rerank``)
               -> text, metadata and vectors of the best rows only (in batches, as they are needed)
               -> merge neighbouring chunks, drop near-duplicates -> top ``k`` passages as Documents

Each Document has the chunk id as ``id`` and, beside the chunk's own metadata (``source``, ``page``, offsets,
``headings``), ``score`` (fused) and ``relevance`` (cosine similarity to the query). The thresholds test
``relevance`` because it is on the same scale for every query, unlike fused scores, which are relative; so an
empty list means "nothing relevant", an answer in itself. With reranking on, each Document also carries
``rerank_score`` (the cross-encoder's sigmoid relevance in [0, 1]) and passages come in its order.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field, model_validator

from slmkit.retrieval.knowledge_base import KnowledgeBase
from slmkit.retrieval.rerank import CrossEncoderReranker, rerank_score

if TYPE_CHECKING:
    import numpy as np

__all__ = ["HybridRetriever"]

_CALL_ARGS = frozenset({"k", "filter"})
_IGNORED_ARGS = frozenset({"verbose"})  # LangChain passes it along; it changes nothing here


class HybridRetriever(BaseRetriever):
    """Hybrid (BM25 + dense) retriever over a knowledge base.

    Example:
        .. code-block:: python

            retriever = kb.as_retriever(k=5, filter={"format": "pdf"})
            retriever.invoke("side effects of metformin")            # 5 passages at most, maybe none
            retriever.invoke("side effects of metformin", k=2, filter={"source": "/docs/leaflet.pdf"})
            kb.as_retriever(k=3, rerank_top_n=20)  # a cross-encoder reorders the 20 best chunks first
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    knowledge_base: KnowledgeBase
    k: int = Field(default=4, ge=1)
    """Most passages returned (``invoke(query, k=...)`` overrides it per call)."""
    filter: dict[str, Any] | None = None
    """Chroma ``where`` filter on chunk metadata, e.g. ``{"source": path}`` or ``{"page": {"$lte": 3}}``."""
    fetch_k: int = Field(default=50, ge=1)
    """Candidates taken from each of BM25 and dense search before fusion (at least ``k``)."""
    fusion: Literal["score", "rrf"] = "score"
    """``score``: weighted min-max-normalised scores; ``rrf``: reciprocal-rank fusion."""
    bm25_weight: float = Field(default=0.5, ge=0)
    """Weight of BM25 in the fusion; 0 turns BM25 off."""
    dense_weight: float = Field(default=0.5, ge=0)
    """Weight of dense (embedding) similarity in the fusion; 0 turns dense search off."""
    rrf_k: int = Field(default=60, ge=1)
    min_relevance: float | None = Field(default=0.2, ge=-1, le=1)
    """Cosine similarity to the query below which a chunk is never returned; ``None``: no floor."""
    min_top_relevance: float | None = Field(default=0.3, ge=-1, le=1)
    """When no candidate reaches this cosine similarity, nothing in the knowledge base is relevant and the
    answer is ``[]``; ``None``: always answer. Both thresholds are calibrated for all-MiniLM-L6-v2 (see
    ``benchmarks/results/retrieval.md``); other embedders need their own values."""
    dedup_threshold: float | None = Field(default=0.95, gt=0, le=1)
    """Cosine similarity at or above which a chunk counts as a near-duplicate of a better one; ``None`` keeps all."""
    merge_neighbours: bool = True
    """Chunks of the same source that overlap or follow each other in its text come back as one passage, so
    ``k`` counts distinct passages rather than fragments of one (+0.005 nDCG@10, +0.015 recall@10 on SciFact)."""
    rerank_top_n: int | None = Field(default=None, ge=1)
    """Rerank the best N fused chunks with a cross-encoder before passages are assembled (only those N can be
    returned); ``None``: no reranking. Costs a model call per chunk (see ``benchmarks/RESULTS.md``)."""
    reranker: CrossEncoderReranker | None = None
    """The cross-encoder used when ``rerank_top_n`` is set; ``None``: the packaged ms-marco-MiniLM-L-12-v2."""

    @model_validator(mode="after")
    def _some_weight(self) -> HybridRetriever:
        if self.bm25_weight == 0 and self.dense_weight == 0:
            raise ValueError("bm25_weight and dense_weight cannot both be 0.")
        if self.reranker is not None and self.rerank_top_n is None:
            raise ValueError("A reranker was given without rerank_top_n: set how many chunks it reranks.")
        return self

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        unknown = set(kwargs) - _CALL_ARGS - _IGNORED_ARGS
        if unknown:
            raise TypeError(
                f"HybridRetriever.invoke got unexpected arguments {sorted(unknown)}; it takes k and filter."
            )
        k = int(kwargs.get("k") or self.k)
        where = kwargs.get("filter", self.filter)
        return self.search(query, k=k, where=where)

    def search(self, query: str, *, k: int, where: dict[str, Any] | None = None) -> list[Document]:
        """The retrieval itself, without LangChain's callbacks (benchmarks time this)."""
        kb = self.knowledge_base
        if not query.strip():
            return []
        vector = kb.embed_query(query)
        with kb.reading():  # one generation for every step, even while another process ingests
            return self._search(kb, query, vector, k, where)

    def _search(
        self, kb: KnowledgeBase, query: str, vector: list[float], k: int, where: dict[str, Any] | None
    ) -> list[Document]:
        import numpy as np

        from slmkit.retrieval.fusion import score_fusion

        fetch = max(self.fetch_k, k)
        dense = kb.dense_search(vector, fetch, where) if self.dense_weight > 0 else []
        lexical = kb.bm25_search(query, fetch, where) if self.bm25_weight > 0 else []
        ids = list(dict.fromkeys([i for i, _ in dense] + [i for i, _ in lexical]))
        # Dense candidates come with their cosine; only BM25-only ones need their stored vector for it.
        known = dict(dense)
        stored = kb.vectors([i for i in ids if i not in known])
        ids = [i for i in ids if i in known or i in stored]
        if not ids:
            return []
        query_vector = np.asarray(vector, dtype="float32")
        relevance = np.array(
            [known[i] if i in known else float(_cosine(stored[i][None, :], query_vector)[0]) for i in ids]
        )
        if self.min_top_relevance is not None and relevance.max() < self.min_top_relevance:
            return []
        if self.fusion == "rrf":
            fused = _rrf(ids, [lexical, dense], (self.bm25_weight, self.dense_weight), self.rrf_k)
        else:
            bm25 = kb.bm25_scores(query, ids) if self.bm25_weight else np.zeros(len(ids))
            fused = score_fusion([bm25, relevance], [self.bm25_weight, self.dense_weight])
        order = [int(row) for row in np.argsort(-fused, kind="stable")]
        if self.min_relevance is not None:
            order = [row for row in order if relevance[row] >= self.min_relevance]

        def chunks(rows: list[int]) -> tuple[list[Document], np.ndarray]:
            """Text, metadata and vector of these candidate rows, fetched only now: most candidates are never
            shown, and fetching all of them was a third of a query's time."""
            records = kb.fetch([ids[row] for row in rows])
            rows = [row for row in rows if ids[row] in records]
            docs = [_document(ids[row], records[ids[row]], fused[row], relevance[row]) for row in rows]
            vectors = np.array([records[ids[row]][2] for row in rows], dtype="float32").reshape(len(rows), -1)
            return docs, vectors

        if self.rerank_top_n is not None:
            top, vectors = chunks(order[: self.rerank_top_n])
            if top:
                top, positions = _rerank(self.reranker or CrossEncoderReranker(), query, top)
                vectors = vectors[positions]
            return self._passages([(top, vectors)], k)
        batch = max(3 * k, 10)  # merged neighbours and duplicates use up rows; another batch if they run out
        return self._passages((chunks(order[start : start + batch]) for start in range(0, len(order), batch)), k)

    def _passages(self, batches: Iterable[tuple[list[Document], np.ndarray]], k: int) -> list[Document]:
        """The best ``k`` passages: neighbouring chunks merged, near-duplicates of better chunks dropped (batches
        are fetched as they are needed)."""
        import numpy as np

        passages: list[Document] = []
        kept: list[np.ndarray] = []
        for chunks, vectors in batches:
            unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            for chunk, direction in zip(chunks, unit, strict=True):
                if len(passages) >= k:
                    return passages
                if self.merge_neighbours and _absorb(passages, chunk):
                    continue
                duplicate = (
                    self.dedup_threshold is not None
                    and kept
                    and float(np.max(np.stack(kept) @ direction)) >= self.dedup_threshold
                )
                if not duplicate:
                    passages.append(chunk)
                    kept.append(direction)
        return passages


def _rerank(reranker: CrossEncoderReranker, query: str, chunks: list[Document]) -> tuple[list[Document], list[int]]:
    """Chunks in the cross-encoder's order, each with ``rerank_score``, and their former positions."""
    import numpy as np

    logits = reranker.score(query, [chunk.page_content for chunk in chunks])
    ranked = [int(i) for i in np.argsort(-logits, kind="stable")]
    for i in ranked:
        chunks[i].metadata["rerank_score"] = rerank_score(logits[i])
    return [chunks[i] for i in ranked], ranked


def _rrf(
    ids: list[str], rankings: list[list[tuple[str, float]]], weights: tuple[float, float], rrf_k: int
) -> np.ndarray:
    import numpy as np

    from slmkit.retrieval.fusion import rrf

    fused = rrf([[i for i, _ in ranking] for ranking in rankings], weights, rrf_k=rrf_k)
    return np.array([fused.get(i, 0.0) for i in ids])


def _document(chunk_id: str, record: Any, score: float, relevance: float) -> Document:
    text, metadata, _ = record
    metadata = {**metadata, "score": round(float(score), 6), "relevance": round(float(relevance), 6)}
    return Document(id=chunk_id, page_content=text, metadata=metadata)


def _body(chunk: Document) -> str:
    header = chunk.metadata.get("headings")
    return chunk.page_content[len(header) + 2 :] if header else chunk.page_content


_MAX_GAP = 2
"""Characters between two neighbouring chunks that still make them one passage: the whitespace the splitter
stripped at the boundary (a space, a newline or a paragraph break)."""


def _merge(better: Document, other: Document) -> Document | None:
    """One passage from two chunks that overlap or touch in the same text; ``None`` when they do not."""
    a, b = better.metadata, other.metadata
    same_text = ("source", "page", "headings")
    if any(a.get(key) != b.get(key) for key in same_text) or "start_index" not in a or "start_index" not in b:
        return None
    first, second = (better, other) if a["start_index"] <= b["start_index"] else (other, better)
    f, s = first.metadata, second.metadata
    gap = s["start_index"] - f["end_index"]
    if gap > _MAX_GAP:
        return None
    if gap >= 0:  # neighbours without overlap: only whitespace lies between them
        body = _body(first) + ("", " ", "\n\n")[gap] + _body(second)
    else:
        body = _body(first) + (_body(second)[-gap:] if s["end_index"] > f["end_index"] else "")
    header = a.get("headings")
    metadata = {
        **a,
        "start_index": f["start_index"],
        "end_index": max(f["end_index"], s["end_index"]),
        "start_line": f["start_line"],
        "end_line": max(f["end_line"], s["end_line"]),
    }
    return Document(id=better.id, page_content=f"{header}\n\n{body}" if header else body, metadata=metadata)


def _absorb(passages: list[Document], chunk: Document) -> bool:
    """Merge ``chunk`` into the passage it overlaps or touches, if any (the passage keeps its rank)."""
    for position, passage in enumerate(passages):
        if (merged := _merge(passage, chunk)) is not None:
            passages[position] = merged
            return True
    return False


def _cosine(vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    import numpy as np

    norms = np.linalg.norm(vectors, axis=1) * (np.linalg.norm(query) or 1.0)
    similarity: np.ndarray = (vectors @ query) / np.where(norms == 0, 1.0, norms)
    return similarity
