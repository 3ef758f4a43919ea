"""The embedder behind semantic rules and the learned router: the packaged all-MiniLM-L6-v2, created on first use.

``default_embeddings()`` returns one shared instance, so every rule that uses the default embeds a prompt once per
decision (``RoutingRequest.embedding`` caches by embedder). Any LangChain ``Embeddings`` can be passed instead.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from slmkit.core.errors import MissingDependencyError

if TYPE_CHECKING:
    import numpy as np
    from langchain_core.embeddings import Embeddings

__all__ = ["default_embeddings", "embed_texts"]


@functools.lru_cache(maxsize=1)
def default_embeddings() -> Embeddings:
    """The packaged all-MiniLM-L6-v2 (``slmkit.retrieval``); the model itself loads on the first embedding."""
    try:
        from slmkit.retrieval.embeddings import SentenceTransformerEmbeddings
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise MissingDependencyError("sentence-transformers", extra="retrieval", purpose="routing embeddings") from exc
    return SentenceTransformerEmbeddings()


def embed_texts(embedder: Embeddings, texts: list[str]) -> np.ndarray:
    """Unit-length float32 rows, one per text (ours encode to numpy directly, others go through LangChain)."""
    import numpy as np

    from slmkit.retrieval.embeddings import SentenceTransformerEmbeddings

    if isinstance(embedder, SentenceTransformerEmbeddings):
        return embedder.encode(texts)
    vectors = np.asarray(embedder.embed_documents(texts), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)
