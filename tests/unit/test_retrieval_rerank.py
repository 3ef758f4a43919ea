"""CrossEncoderReranker and the hybrid retriever's rerank option, offline: a word-level tokenizer and a fake ONNX
session whose logit counts the passage words that also occur in the query."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from langchain_core.documents import Document
from pydantic import ValidationError

from slmkit.retrieval import KnowledgeBase, KnowledgeBaseConfig
from slmkit.retrieval import rerank as rerank_module
from slmkit.retrieval.rerank import CrossEncoderReranker, rerank_score
from slmkit.retrieval.testing import BagOfWordsEmbedding

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class FakeSession:
    """``logit = 2 * (passage words found in the query) - 1``; records the shape of every batch."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, int]] = []

    def get_inputs(self):
        return [SimpleNamespace(name=name) for name in INPUTS]

    def run(self, output_names, feeds):
        assert output_names is None
        assert set(feeds) == set(INPUTS)
        ids, mask, types = feeds["input_ids"], feeds["attention_mask"], feeds["token_type_ids"]
        assert ids.dtype == np.int64
        self.batches.append(ids.shape)
        logits = []
        for row, row_mask, row_types in zip(ids, mask, types, strict=True):
            query = {int(t) for t, m, s in zip(row, row_mask, row_types, strict=True) if m and s == 0 and t > 2}
            passage = [int(t) for t, m, s in zip(row, row_mask, row_types, strict=True) if m and s == 1 and t > 2]
            logits.append([2.0 * sum(t in query for t in passage) - 1.0])
        return [np.array(logits, dtype=np.float32)]


def fake_tokenizer(words):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.normalizers import Lowercase
    from tokenizers.pre_tokenizers import Whitespace
    from tokenizers.processors import TemplateProcessing

    vocab = {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "[UNK]": 3}
    for word in sorted(words):
        vocab.setdefault(word, len(vocab))
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = Lowercase()
    tokenizer.pre_tokenizer = Whitespace()
    tokenizer.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 1), ("[SEP]", 2)]
    )
    tokenizer.enable_padding(length=512)  # like the packaged tokenizer.json: the reranker must turn this off
    return tokenizer


WORDS = set(
    re.findall(
        r"\S+",
        "when did the bridge open it opened in 1932 bridges span rivers cats purr dogs bark a long story about "
        "nothing at all and then some more words here sourdough bread needs flour water salt starter why do "
        "they are content sleep most of day strangers love walks park diesel engines compress air",
    )
)


@pytest.fixture
def fake(monkeypatch):
    """The fake model in place of the packaged one; counts loads."""
    loads: list[str] = []
    session = FakeSession()

    def open_session(model):
        loads.append(model)
        return session

    monkeypatch.setattr(rerank_module, "_ENCODERS", {})
    monkeypatch.setattr(rerank_module, "onnx_session", open_session)
    monkeypatch.setattr(rerank_module, "onnx_tokenizer", lambda model: fake_tokenizer(WORDS))
    return SimpleNamespace(session=session, loads=loads)


def test_constructor_loads_nothing(fake):
    CrossEncoderReranker(top_n=2, max_length=256, batch_size=4)
    assert fake.loads == []


def test_score_returns_logits_in_the_order_given(fake):
    texts = ["bridges span rivers", "it opened in 1932", "when did the bridge open", "cats purr"]
    logits = CrossEncoderReranker().score("when did the bridge open", texts)
    assert logits.dtype == np.float32
    assert logits.tolist() == [-1.0, -1.0, 9.0, -1.0]
    assert CrossEncoderReranker().score("anything", []).shape == (0,)


def test_batches_are_padded_to_their_longest_pair_only(fake):
    texts = ["cats purr", "a long story about nothing at all and then some more words here", "dogs bark"] * 2
    reranker = CrossEncoderReranker(batch_size=2)
    assert reranker.score("cats purr", texts).tolist() == [3.0, -1.0, -1.0] * 2
    assert len(fake.session.batches) == 3
    widths = [width for _, width in fake.session.batches]
    assert widths == sorted(widths)  # pairs are sorted by length, so short ones share a batch
    assert widths[0] == 7  # [CLS] cats purr [SEP] cats purr [SEP]
    assert CrossEncoderReranker(batch_size=16).score("cats purr", texts).tolist() == [3.0, -1.0, -1.0] * 2


def test_pairs_are_cut_to_max_length(fake):
    long = " ".join(["cats"] * 50)
    logits = CrossEncoderReranker(max_length=10).score("cats purr", [long])
    assert max(width for _, width in fake.session.batches) == 10
    assert logits.tolist() == [2.0 * 5 - 1.0]  # 10 = [CLS] 2 query words [SEP] 5 passage words [SEP]


def test_compress_documents_keeps_the_top_n_with_a_probability(fake):
    docs = [
        Document(id="a", page_content="dogs bark at strangers", metadata={"source": "dogs.md"}),
        Document(id="b", page_content="why do cats purr when they are content", metadata={"source": "cats.md"}),
        Document(id="c", page_content="cats sleep most of the day", metadata={"source": "cats2.md"}),
    ]
    best = CrossEncoderReranker(top_n=2).compress_documents(docs, "why do cats purr")
    assert [d.id for d in best] == ["b", "c"]
    assert best[0].metadata == {"source": "cats.md", "rerank_score": rerank_score(7.0)}
    assert best[1].metadata["rerank_score"] == round(1 / (1 + math.exp(-1.0)), 6)
    assert all(0.0 <= d.metadata["rerank_score"] <= 1.0 for d in best)
    assert "rerank_score" not in docs[1].metadata  # the caller's documents are left alone
    assert CrossEncoderReranker().compress_documents([], "why") == []


def test_rerank_score_is_a_sigmoid():
    assert rerank_score(0.0) == 0.5
    assert rerank_score(-50.0) == 0.0
    assert rerank_score(50.0) == 1.0
    assert rerank_score(2.0) > rerank_score(1.0)


def test_model_loads_once_per_process_across_threads(fake):
    errors: list[BaseException] = []

    def work():
        try:
            CrossEncoderReranker().score("cats purr", ["cats purr"])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert fake.loads == ["ms-marco-minilm-l12-reranker"]
    CrossEncoderReranker(max_length=128).score("cats", ["cats"])  # another max_length: its own tokenizer
    assert fake.loads == ["ms-marco-minilm-l12-reranker"] * 2


def test_works_inside_contextual_compression_retriever(fake):
    compression = pytest.importorskip("langchain_classic.retrievers")
    from langchain_core.retrievers import BaseRetriever

    class Fixed(BaseRetriever):
        def _get_relevant_documents(self, query, *, run_manager):
            return [Document(page_content=t) for t in ("dogs bark", "cats purr", "diesel engines compress air")]

    retriever = compression.ContextualCompressionRetriever(
        base_compressor=CrossEncoderReranker(top_n=1), base_retriever=Fixed()
    )
    (doc,) = retriever.invoke("why do cats purr")
    assert doc.page_content == "cats purr"
    assert doc.metadata["rerank_score"] > 0.9


def test_importing_the_retriever_loads_neither_onnxruntime_nor_tokenizers():
    code = (
        "import sys; from slmkit.retrieval import HybridRetriever; from slmkit.retrieval.rerank import "
        "CrossEncoderReranker; CrossEncoderReranker(); print(','.join(m for m in ('onnxruntime', 'tokenizers') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


# -- HybridRetriever(rerank_top_n=...) ------------------------------------------------------------------------------

FILES = {
    "cats.md": "# Cats\n\nCats purr when they are content and sleep most of the day.\n",
    "cats-again.md": "# Cats\n\nCats sleep most of the day and purr.\n",
    "dogs.md": "# Dogs\n\nDogs bark at strangers and love long walks in the park.\n",
    "bread.txt": "Sourdough bread needs flour, water, salt and a lively starter.",
    "engines.txt": "Diesel engines compress air until the injected fuel ignites.",
}
LOOSE = {"min_relevance": None, "min_top_relevance": None}


@pytest.fixture(scope="module")
def kb(tmp_path_factory) -> KnowledgeBase:
    root = tmp_path_factory.mktemp("rerank")
    docs = root / "docs"
    docs.mkdir()
    for name, text in FILES.items():
        (docs / name).write_text(text)
    base = KnowledgeBase(
        name="rerank",
        path=root / "kb",
        embedding=BagOfWordsEmbedding(),
        config=KnowledgeBaseConfig(chunk_size=64, chunk_overlap=0),
    )
    base.ingest([docs])
    return base


class ReverseFused(CrossEncoderReranker):
    """Scores chunks by their position from the end, so reranking visibly reverses the fused order."""

    def score(self, query, texts):
        return np.arange(len(texts), dtype=np.float32)


def names(docs):
    return [Path(d.metadata["source"]).name for d in docs]


def test_rerank_is_off_by_default(kb):
    retriever = kb.as_retriever()
    assert retriever.rerank_top_n is None
    assert retriever.reranker is None
    assert all("rerank_score" not in d.metadata for d in kb.as_retriever(k=5, **LOOSE).invoke("cats purr"))


def test_top_n_chunks_are_reordered_by_the_reranker(kb):
    plain = kb.as_retriever(k=3, dedup_threshold=None, **LOOSE).invoke("cats purr day")
    retriever = kb.as_retriever(k=3, dedup_threshold=None, rerank_top_n=3, reranker=ReverseFused(), **LOOSE)
    reranked = retriever.invoke("cats purr day")
    assert names(reranked) == names(plain)[::-1]
    assert [d.metadata["rerank_score"] for d in reranked] == [rerank_score(2), rerank_score(1), rerank_score(0)]
    assert [d.metadata["score"] for d in reranked] == [d.metadata["score"] for d in plain][::-1]


def test_only_the_top_n_fused_chunks_can_be_returned(kb):
    plain = kb.as_retriever(k=5, dedup_threshold=None, **LOOSE).invoke("cats purr day")
    reranked = kb.as_retriever(k=5, rerank_top_n=2, reranker=ReverseFused(), **LOOSE).invoke("cats purr day")
    assert sorted(names(reranked)) == sorted(names(plain)[:2])


def test_default_reranker_is_the_packaged_cross_encoder(kb, fake):
    retriever = kb.as_retriever(k=2, rerank_top_n=4, **LOOSE)
    docs = retriever.invoke("are cats content when they purr")
    assert names(docs)[0] == "cats.md"
    assert docs[0].metadata["rerank_score"] >= docs[1].metadata["rerank_score"]
    assert fake.loads == ["ms-marco-minilm-l12-reranker"]


def test_thresholds_still_answer_nothing_before_reranking(kb, fake):
    assert kb.as_retriever(rerank_top_n=5).invoke("quantum chromodynamics lattice") == []
    assert fake.loads == []


def test_a_reranker_needs_rerank_top_n(kb):
    with pytest.raises(ValidationError, match=re.escape("without rerank_top_n")):
        kb.as_retriever(reranker=CrossEncoderReranker())
    with pytest.raises(ValidationError):
        kb.as_retriever(rerank_top_n=0)
