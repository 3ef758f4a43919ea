"""StaticEmbeddings from the real packaged all-MiniLM-L6-v2: build, cache, agreement with MiniLM, conformance."""

from __future__ import annotations

import numpy as np
import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from scipy.stats import spearmanr

from slmkit.core.embeddings import SentenceTransformerEmbeddings
from slmkit.routing import StaticEmbeddings
from slmkit.routing import static_embedding as static

# Six topics, three requests each.
SENTENCES = [
    "Write a Python function that sorts a list.",
    "How do I sort an array in JavaScript?",
    "Fix this stack trace: KeyError in my dict lookup",
    "hi, how are you?",
    "good morning, nice to see you",
    "thanks, that's all for today",
    "What is the derivative of sin(x)?",
    "Solve for x: 3x + 5 = 11",
    "Prove that the square root of 2 is irrational.",
    "Summarise the plot of Hamlet.",
    "Who wrote Pride and Prejudice?",
    "Translate 'good night' into French.",
    "What lowers blood pressure?",
    "Symptoms of the flu and how to treat it",
    "Which vitamins are in spinach?",
    "Book a table for two at an Italian restaurant",
    "What's the weather like in Paris tomorrow?",
    "Recommend a thriller movie for tonight",
]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> StaticEmbeddings:
    """A table built from the packaged model into an empty cache folder."""
    static._load_index.cache_clear()
    static._load_table.cache_clear()
    emb = StaticEmbeddings(cache_dir=str(tmp_path_factory.mktemp("cache")), show_progress=False)
    emb.warm_up()
    return emb


def test_first_use_builds_a_float16_table_for_the_whole_vocabulary(built):
    table = np.load(built.table_path())
    assert table.dtype == np.float16
    assert table.shape == (30522, 384)
    assert np.isfinite(table).all()
    np.testing.assert_allclose(table.astype(np.float32).mean(axis=0), 0.0, atol=1e-2)  # centred


def test_a_second_process_reads_the_cached_table(built, monkeypatch):
    static._load_index.cache_clear()
    static._load_table.cache_clear()
    monkeypatch.setattr(static, "build_table", lambda *a, **k: pytest.fail("table rebuilt"))
    vector = StaticEmbeddings(cache_dir=built.cache_dir, weighting="zipf").embed_query("Sort a list in Python")
    assert len(vector) == 384
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_similarities_follow_minilm(built):
    fast = built.encode(SENTENCES)
    full = SentenceTransformerEmbeddings().encode(SENTENCES)
    pairs = np.triu_indices(len(SENTENCES), 1)
    agreement = spearmanr((fast @ fast.T)[pairs], (full @ full.T)[pairs]).statistic
    assert agreement > 0.45  # 0.51 measured with the packaged model
    code, chat = fast[0], fast[3]
    assert float(fast[1] @ code) > float(fast[1] @ chat)  # a sort request is nearer code than chitchat
    assert float(fast[4] @ chat) > float(fast[4] @ code)


class TestStaticEmbeddingsStandard(EmbeddingsIntegrationTests):
    """langchain-tests' suite on the default table (in the slmkit cache; built there on first use)."""

    @property
    def embeddings_class(self) -> type[StaticEmbeddings]:
        return StaticEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"show_progress": False}
