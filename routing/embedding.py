"""The embedder behind semantic rules and the learned router: the packaged all-MiniLM-L6-v2, created on first use.

``default_embeddings()`` returns one shared instance, so every rule that uses the default embeds a prompt once per
decision (``RoutingRequest.embedding`` caches by embedder). Any LangChain ``Embeddings`` can be passed instead.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from slmkit.core.embeddings import SentenceTransformerEmbeddings, embed_texts

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings

__all__ = ["default_embeddings", "embed_texts"]


@functools.lru_cache(maxsize=1)
def default_embeddings() -> Embeddings:
    """The packaged all-MiniLM-L6-v2; the model itself loads on the first embedding."""
    return SentenceTransformerEmbeddings()
