"""The embedders behind semantic rules and the learned router, created on first use.

By default both use :class:`StaticEmbeddings`, a token table distilled from the packaged all-MiniLM-L6-v2: a prompt
vector costs ~0.5 ms instead of a 10-30 ms MiniLM forward pass, which keeps a decision within milliseconds. Semantic
rules use its ``sif`` weighting (similarities on MiniLM's scale), the learned router its ``zipf`` weighting (the
better router features on RouteLLM's MMLU set); benchmarks/results/routing.md has the figures. The full MiniLM stays
selectable: pass ``SentenceTransformerEmbeddings()`` (or any LangChain ``Embeddings``) to ``Semantic`` or
``LearnedRouter``. Each default is one shared instance, so a request embeds its prompt once per embedder
(``RoutingRequest.embedding`` caches by embedder).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from slmkit.core.embeddings import SentenceTransformerEmbeddings
from slmkit.core.embeddings import embed_texts as _embed_texts
from slmkit.routing.static_embedding import StaticEmbeddings

if TYPE_CHECKING:
    import numpy as np
    from langchain_core.embeddings import Embeddings

__all__ = ["default_embeddings", "default_router_embeddings", "embed_texts", "minilm_embeddings"]


@functools.lru_cache(maxsize=1)
def default_embeddings() -> Embeddings:
    """Semantic rules' default: the static MiniLM table, ``sif`` weighting (loaded or built on the first embedding)."""
    return StaticEmbeddings()


@functools.lru_cache(maxsize=1)
def default_router_embeddings() -> Embeddings:
    """The learned router's default: the static MiniLM table, ``zipf`` weighting."""
    return StaticEmbeddings(weighting="zipf")


@functools.lru_cache(maxsize=1)
def minilm_embeddings() -> Embeddings:
    """The packaged all-MiniLM-L6-v2 itself (slower, better few-shot similarity); the model loads on first use."""
    return SentenceTransformerEmbeddings()


def embed_texts(embedder: Embeddings, texts: list[str]) -> np.ndarray:
    """Unit-length float32 rows, one per text (our embedders encode to numpy directly)."""
    if isinstance(embedder, StaticEmbeddings):
        return embedder.encode(texts)
    return _embed_texts(embedder, texts)
