"""Retrieval: a persistent knowledge base of your documents and a hybrid (BM25 + dense) LangChain retriever.

    files -> loaders -> splitting -> embeddings -> KnowledgeBase (Chroma + BM25 + manifest) -> HybridRetriever

Modules, one job each: ``loaders`` (file -> text documents), ``splitting`` (token-aware chunks), ``embeddings``
(sentence-transformers, packaged MiniLM by default), ``manifest`` (SQLite record of sources and chunks),
``store`` (the Chroma collection), ``bm25`` (bm25s index), ``ingest`` (incremental, crash-safe ingestion),
``fusion`` (score fusion, de-duplication), ``knowledge_base``, ``retriever`` and ``rerank`` (a cross-encoder that
reorders the retriever's best candidates; ONNX, packaged).
Everything is imported lazily, so ``import slmkit.retrieval`` loads neither torch nor chromadb.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slmkit.core.lazy import lazy_exports

if TYPE_CHECKING:
    from slmkit.retrieval.config import KnowledgeBaseConfig, default_kb_root
    from slmkit.retrieval.embeddings import SentenceTransformerEmbeddings
    from slmkit.retrieval.ingest import IngestReport, SkippedFile
    from slmkit.retrieval.knowledge_base import KnowledgeBase
    from slmkit.retrieval.loaders import load_file
    from slmkit.retrieval.rerank import CrossEncoderReranker
    from slmkit.retrieval.retriever import HybridRetriever

__all__ = [
    "CrossEncoderReranker",
    "HybridRetriever",
    "IngestReport",
    "KnowledgeBase",
    "KnowledgeBaseConfig",
    "SentenceTransformerEmbeddings",
    "SkippedFile",
    "default_kb_root",
    "load_file",
]

_LAZY = {
    "CrossEncoderReranker": "slmkit.retrieval.rerank",
    "HybridRetriever": "slmkit.retrieval.retriever",
    "IngestReport": "slmkit.retrieval.ingest",
    "KnowledgeBase": "slmkit.retrieval.knowledge_base",
    "KnowledgeBaseConfig": "slmkit.retrieval.config",
    "SentenceTransformerEmbeddings": "slmkit.retrieval.embeddings",
    "SkippedFile": "slmkit.retrieval.ingest",
    "default_kb_root": "slmkit.retrieval.config",
    "load_file": "slmkit.retrieval.loaders",
}


__getattr__ = lazy_exports(__name__, _LAZY)
