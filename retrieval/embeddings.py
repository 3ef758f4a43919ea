"""Which embedder a knowledge base uses: the packaged MiniLM by default, a sentence-transformers folder, or any
LangChain ``Embeddings``.

``resolve_embedding`` turns what a user passes into the embedder, and ``embedding_id`` names it, so a knowledge base
can refuse to mix embedders. The model wrapper itself lives in ``slmkit.core.embeddings`` (guards and routing use the
same loaded model) and is re-exported here.
"""

from __future__ import annotations

import os

from langchain_core.embeddings import Embeddings

from slmkit.core.embeddings import DEFAULT_EMBEDDING_ID, SentenceTransformerEmbeddings, packaged_model_dir
from slmkit.core.errors import ConfigurationError

__all__ = [
    "DEFAULT_EMBEDDING_ID",
    "SentenceTransformerEmbeddings",
    "embedding_id",
    "packaged_model_dir",
    "resolve_embedding",
]


def resolve_embedding(embedding: Embeddings | str | os.PathLike[str] | None) -> Embeddings:
    """The embedder to use: ``None`` -> packaged MiniLM; a folder -> that sentence-transformers model."""
    if embedding is None:
        return SentenceTransformerEmbeddings()
    if isinstance(embedding, Embeddings):
        return embedding
    if isinstance(embedding, str | os.PathLike):
        return SentenceTransformerEmbeddings(model_path=os.fspath(embedding))
    raise ConfigurationError(
        f"embedding must be a LangChain Embeddings, a sentence-transformers folder or None, not {type(embedding)}."
    )


def embedding_id(embedding: Embeddings) -> str:
    """A name that changes when the vectors would: the model for ours, the class (and model name) otherwise."""
    if isinstance(embedding, SentenceTransformerEmbeddings):
        return embedding.model_id
    kind = f"{type(embedding).__module__}.{type(embedding).__qualname__}"
    for attr in ("model", "model_name", "size"):
        if (value := getattr(embedding, attr, None)) is not None:
            return f"{kind}:{value}"
    return kind
