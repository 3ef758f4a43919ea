"""HybridRetriever and fusion, offline: a bag-of-words fake embedder, real Chroma and BM25 in ``tmp_path``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

from slmkit.retrieval import HybridRetriever, KnowledgeBase, KnowledgeBaseConfig
from slmkit.retrieval.fusion import minmax, rrf, score_fusion
from slmkit.retrieval.testing import BagOfWordsEmbedding, write_pdf

FILES = {
    "cats.md": "# Cats\n\nCats purr when they are content and sleep most of the day.\n",
    "dogs.md": "# Dogs\n\nDogs bark at strangers and love long walks in the park.\n",
    "bread.txt": "Sourdough bread needs flour, water, salt and a lively starter.",
    "copy-of-bread.txt": "Sourdough bread needs flour, water, salt and a lively starter.",
    "engines.txt": "Diesel engines compress air until the injected fuel ignites.",
}


@pytest.fixture(scope="module")
def kb(tmp_path_factory) -> KnowledgeBase:
    root = tmp_path_factory.mktemp("retriever")
    docs = root / "docs"
    docs.mkdir()
    for name, text in FILES.items():
        (docs / name).write_text(text)
    write_pdf(docs / "manual.pdf", [["Cover page of the pump manual"], ["Prime the pump before starting it"]])
    base = KnowledgeBase(
        name="animals",
        path=root / "kb",
        embedding=BagOfWordsEmbedding(),
        config=KnowledgeBaseConfig(chunk_size=64, chunk_overlap=0),
    )
    base.ingest([docs])
    return base


LOOSE = {"min_relevance": None, "min_top_relevance": None}  # return the top k whatever their relevance


def names(docs: list[Document]) -> list[str]:
    return [Path(d.metadata["source"]).name for d in docs]


def test_is_a_langchain_retriever(kb):
    retriever = kb.as_retriever()
    assert isinstance(retriever, BaseRetriever)
    assert isinstance(retriever, HybridRetriever)
    assert retriever.knowledge_base is kb


def test_best_match_first_with_source_and_scores(kb):
    docs = kb.as_retriever(k=2).invoke("why do cats purr")
    assert names(docs)[0] == "cats.md"
    top = docs[0]
    assert top.id
    assert top.metadata["headings"] == "Cats"
    assert 0 < top.metadata["relevance"] <= 1
    assert top.metadata["score"] > 0


def test_pdf_hits_carry_their_page(kb):
    [doc] = kb.as_retriever(k=1).invoke("prime the pump")
    assert names([doc]) == ["manual.pdf"]
    assert doc.metadata["page"] == 2


def test_k_in_constructor_and_per_call(kb):
    loose = kb.as_retriever(k=3, **LOOSE)
    assert len(loose.invoke("bread cats dogs engines")) == 3
    assert len(loose.invoke("bread cats dogs engines", k=1)) == 1


def test_filter_in_constructor_and_per_call(kb):
    only_text = kb.as_retriever(k=5, filter={"format": "text"}, **LOOSE)
    assert set(names(only_text.invoke("cats bread"))) <= {"bread.txt", "copy-of-bread.txt", "engines.txt"}
    dogs = str(Path(kb.sources()[0]).parent / "dogs.md")
    assert names(only_text.invoke("cats", filter={"source": dogs})) == ["dogs.md"]


def test_nothing_relevant_is_an_empty_answer(kb):
    assert kb.as_retriever().invoke("quantum chromodynamics lattice gauge") == []
    assert kb.as_retriever().invoke("   ") == []


def test_chunks_below_the_relevance_floor_are_left_out(kb):
    docs = kb.as_retriever(k=5, min_relevance=0.3).invoke("cats purr")
    assert names(docs) == ["cats.md"]
    assert len(kb.as_retriever(k=5, **LOOSE).invoke("cats purr")) == 5


def test_near_identical_chunks_are_returned_once(kb):
    deduped = names(kb.as_retriever(k=2).invoke("sourdough starter"))
    assert len([n for n in deduped if "bread" in n]) == 1
    both = names(kb.as_retriever(k=2, dedup_threshold=None).invoke("sourdough starter"))
    assert sorted(both) == ["bread.txt", "copy-of-bread.txt"]


def test_rrf_fusion_and_single_signal_retrievers(kb):
    for kwargs in ({"fusion": "rrf"}, {"dense_weight": 0}, {"bm25_weight": 0}):
        assert names(kb.as_retriever(k=1, **kwargs).invoke("diesel engines fuel")) == ["engines.txt"]
    with pytest.raises(ValueError, match="cannot both be 0"):
        kb.as_retriever(bm25_weight=0, dense_weight=0)


async def test_async_invoke(kb):
    docs = await kb.as_retriever(k=1).ainvoke("dogs bark")
    assert names(docs) == ["dogs.md"]


def test_unknown_call_arguments_are_errors(kb):
    with pytest.raises(TypeError, match="top_k"):
        kb.as_retriever().invoke("cats", top_k=3)


def test_empty_knowledge_base_returns_nothing(tmp_path):
    empty = KnowledgeBase(name="empty", path=tmp_path, embedding=BagOfWordsEmbedding())
    assert empty.as_retriever(**LOOSE).invoke("anything") == []


@pytest.mark.parametrize(
    ("values", "expected"),
    [([1.0, 3.0, 2.0], [0.0, 1.0, 0.5]), ([2.0, 2.0], [1.0, 1.0]), ([], [])],
)
def test_minmax(values, expected):
    assert minmax(np.array(values)).tolist() == expected


def test_score_fusion_weighs_normalised_signals():
    bm25, dense = np.array([10.0, 0.0, 5.0]), np.array([0.1, 0.9, 0.5])
    assert score_fusion([bm25, dense], [0.5, 0.5]).tolist() == pytest.approx([0.5, 0.5, 0.5])
    assert np.argmax(score_fusion([bm25, dense], [1.0, 0.0])) == 0
    assert np.argmax(score_fusion([bm25, dense], [0.2, 0.8])) == 1


def test_rrf_rewards_agreement():
    fused = rrf([["x", "y"], ["y", "z"]], [1.0, 1.0], rrf_k=60)
    assert max(fused, key=fused.get) == "y"


@pytest.mark.parametrize("overlap", [16, 0])
def test_neighbouring_chunks_come_back_as_one_passage(tmp_path, overlap):
    text = " ".join(f"Lighthouse keepers logged storm number {i} carefully." for i in range(12))
    (tmp_path / "log.txt").write_text(text)
    config = KnowledgeBaseConfig(chunk_size=48, chunk_overlap=overlap)
    base = KnowledgeBase(name="log", path=tmp_path / "kb", embedding=BagOfWordsEmbedding(), config=config)
    base.ingest([tmp_path / "log.txt"])
    assert base.chunk_count() > 2
    [passage] = base.as_retriever(k=5, **LOOSE).invoke("lighthouse keepers storm")
    start, end = passage.metadata["start_index"], passage.metadata["end_index"]
    assert passage.page_content == text[start:end]
    assert end - start > len(text) // 2  # several chunks merged
    fragments = base.as_retriever(k=5, merge_neighbours=False, dedup_threshold=None, **LOOSE)
    assert len(fragments.invoke("lighthouse keepers storm")) > 1
