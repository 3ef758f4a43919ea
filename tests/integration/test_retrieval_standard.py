"""langchain-tests' standard suites: HybridRetriever over a real knowledge base, and the packaged embedder.

Real all-MiniLM-L6-v2, real embedded Chroma in a temporary folder.
"""

from __future__ import annotations

import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests, RetrieversIntegrationTests

from slmkit.retrieval import HybridRetriever, KnowledgeBase, SentenceTransformerEmbeddings

COFFEE = {
    "espresso.md": "# Espresso\n\nEspresso is brewed by forcing hot water through finely ground coffee under pressure.",
    "filter.md": "# Filter coffee\n\nFilter coffee is brewed by pouring hot water over ground coffee in a filter.",
    "cold-brew.txt": "Cold brew coffee steeps coarse coffee grounds in cold water for twelve to twenty hours.",
    "french-press.txt": "A French press brews coffee by steeping grounds in hot water, then pressing a mesh plunger.",
    "tea.txt": "Green tea leaves are steamed or pan-fired soon after picking to stop oxidation.",
}


@pytest.fixture(scope="class")
def coffee_kb(tmp_path_factory, request) -> None:
    root = tmp_path_factory.mktemp("coffee")
    for name, text in COFFEE.items():
        (root / name).write_text(text)
    kb = KnowledgeBase(name="coffee", path=root / "kb")
    kb.ingest([root])
    request.cls.kb = kb


@pytest.mark.usefixtures("coffee_kb")
class TestHybridRetrieverStandard(RetrieversIntegrationTests):
    kb: KnowledgeBase

    @property
    def retriever_constructor(self) -> type[HybridRetriever]:
        return HybridRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"knowledge_base": self.kb}

    @property
    def retriever_query_example(self) -> str:
        return "How is coffee brewed?"


class TestSentenceTransformerEmbeddingsStandard(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[SentenceTransformerEmbeddings]:
        return SentenceTransformerEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"batch_size": 8}
