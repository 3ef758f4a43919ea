"""ONNX embedders, offline and fast: batching and pooling with a fake session, defaults and ids, the export record
and its checks, choosing the embedder of a knowledge base, and the CLI's --embedder and models pull."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import numpy as np
import pytest
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from tokenizers.processors import TemplateProcessing

from slmkit.core import onnx_embeddings
from slmkit.core.embeddings import DEFAULT_EMBEDDING_ID, SentenceTransformerEmbeddings, embed_texts
from slmkit.core.errors import ConfigurationError, CorruptManifestError, ModelIntegrityError, ModelNotFoundError
from slmkit.core.onnx_embeddings import BGE_SMALL, MINILM, OnnxEmbeddings, _pool, _Runner
from slmkit.retrieval.embeddings import (
    DEFAULT_NEW_EMBEDDER,
    embedder,
    embedding_id,
    recorded_embedding,
    resolve_embedding,
)


@pytest.fixture(autouse=True)
def _own_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SLMKIT_CACHE_DIR", str(tmp_path / "cache"))


def word_tokenizer() -> Tokenizer:
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, **{f"w{i}": i + 4 for i in range(40)}}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    tokenizer.post_processor = TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return tokenizer


class FakeSession:
    """Hidden state of token t at position p: [id, 1, p] (so mean and CLS pooling are checkable); records calls."""

    def __init__(self):
        self.calls: list[tuple[int, int]] = []

    def get_inputs(self):
        return [type("Input", (), {"name": name})() for name in ("input_ids", "attention_mask", "token_type_ids")]

    def run(self, _outputs, feeds):
        ids = feeds["input_ids"]
        assert feeds["attention_mask"].shape == ids.shape == feeds["token_type_ids"].shape
        self.calls.append(ids.shape)
        rows, width = ids.shape
        positions = np.broadcast_to(np.arange(width), (rows, width))
        return [np.stack([ids, np.ones_like(ids), positions], axis=-1).astype("float32")]


def text(n: int) -> str:
    return " ".join(f"w{i % 40}" for i in range(n))


def test_runner_batches_by_length_and_tokens_and_keeps_the_callers_order():
    session = FakeSession()
    runner = _Runner(session, word_tokenizer(), max_length=16, pooling="mean")
    texts = [text(3), text(20), text(1), text(8), text(3)]
    out = runner.encode(texts, batch_size=2, batch_tokens=20)
    assert out.shape == (5, 3)
    # longest first: 16 tokens (cut) alone (20 // 16 = 1), then 10 with 5 (20 // 10 = 2), then 5 and 3 (batch_size 2)
    assert session.calls == [(1, 16), (2, 10), (2, 5)]
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0)
    # rows come back in the caller's order: equal texts, equal vectors, whatever batch they were padded in
    assert np.allclose(out[0], out[4])
    alone = _Runner(FakeSession(), word_tokenizer(), max_length=16, pooling="mean").encode([texts[3]], 8, 4096)
    assert np.allclose(alone[0], out[3])  # padding does not change a mean-pooled vector


def test_mean_pooling_ignores_padding_and_cls_takes_the_first_token():
    hidden = np.array([[[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]]], dtype="float32")
    mask = np.array([[1, 1, 0]])
    assert np.allclose(_pool(hidden, mask, "mean"), [[1.0, 0.0]])
    hidden_cls = np.array([[[0.0, 2.0], [5.0, 5.0]]], dtype="float32")
    assert np.allclose(_pool(hidden_cls, np.array([[1, 1]]), "cls"), [[0.0, 1.0]])


def test_defaults_per_model_and_ids():
    fast, better = OnnxEmbeddings(), OnnxEmbeddings(model=BGE_SMALL)
    assert fast.model == MINILM
    assert fast.query_prefix == ""
    assert better.query_prefix.startswith("Represent this sentence")
    assert OnnxEmbeddings(model=BGE_SMALL, query_prefix="").query_prefix == ""
    # PyTorch and ONNX MiniLM are one embedder for a knowledge base; bge-small is another
    assert embedding_id(fast) == embedding_id(SentenceTransformerEmbeddings()) == DEFAULT_EMBEDDING_ID
    assert embedding_id(better) == BGE_SMALL
    assert isinstance(fast, SentenceTransformerEmbeddings)  # chunked by model tokens, encoded straight to numpy


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError, match="Unknown ONNX embedder"):  # pydantic wraps it: a ValidationError
        OnnxEmbeddings(model="nope")
    with pytest.raises(ValueError, match="model_path"):
        OnnxEmbeddings(model_path="/somewhere")
    with pytest.raises(ValueError, match="device"):
        OnnxEmbeddings(device="cuda")


def test_encode_goes_through_the_runner_with_the_query_prefix(monkeypatch):
    seen: list[list[str]] = []

    class Runner:
        def encode(self, texts, batch_size, batch_tokens):
            seen.append(texts)
            assert batch_tokens >= 2048
            return np.tile(np.eye(1, 4, dtype="float32"), (len(texts), 1))

    monkeypatch.setattr(onnx_embeddings, "_runner", lambda model, max_length: Runner())
    emb = OnnxEmbeddings(model=BGE_SMALL)
    assert emb.embed_query("q") == [1.0, 0.0, 0.0, 0.0]
    assert seen[-1] == [emb.query_prefix + "q"]
    assert emb.embed_documents(["a", "b"]) == [[1.0, 0.0, 0.0, 0.0]] * 2
    assert seen[-1] == ["a", "b"]
    assert embed_texts(emb, ["c"]).shape == (1, 4)
    assert emb.embed_documents([]) == []


# -- the export record --------------------------------------------------------------------------------------------
@pytest.fixture
def source(monkeypatch, tmp_path):
    """A fake packaged MiniLM folder (weights only) in place of the real one."""
    folder = tmp_path / "gt" / "model"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights")
    monkeypatch.setattr(onnx_embeddings, "packaged_model_dir", lambda: folder)
    return folder


def write_export(source, model=b"onnx bytes", **overrides):
    folder = onnx_embeddings.minilm_export_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(model)
    record = {
        "format": 1,
        "source_sha256": hashlib.sha256((source / "model.safetensors").read_bytes()).hexdigest(),
        "sha256": hashlib.sha256(model).hexdigest(),
        **overrides,
    }
    (folder / "export.json").write_text(json.dumps(record))
    return folder


def test_missing_export_names_the_pull_command(source):
    assert not onnx_embeddings.minilm_export_ready()
    with pytest.raises(ModelNotFoundError, match="slmkit models pull all-minilm-l6-v2"):
        _ = OnnxEmbeddings().folder


def test_a_verified_export_is_ready(source):
    folder = write_export(source)
    assert onnx_embeddings.minilm_export_ready()
    assert OnnxEmbeddings().folder == folder


def test_a_damaged_export_or_a_changed_source_is_refused(source):
    folder = write_export(source)
    (folder / "model.onnx").write_bytes(b"onnx bytez")
    with pytest.raises(ModelIntegrityError, match="models pull"):
        _ = OnnxEmbeddings().folder
    write_export(source)
    (source / "model.safetensors").write_bytes(b"other weights")
    with pytest.raises(ModelIntegrityError, match="changed"):
        _ = OnnxEmbeddings().folder
    assert not onnx_embeddings.minilm_export_ready()


def test_an_unknown_record_format_is_not_ready(source):
    write_export(source, format=99)
    assert not onnx_embeddings.minilm_export_ready()


# -- which embedder ------------------------------------------------------------------------------------------------
def manifest(folder, embedding_id=None):
    folder.mkdir(parents=True)
    db = sqlite3.connect(folder / "manifest.sqlite")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    if embedding_id:
        db.execute("INSERT INTO meta VALUES ('embedding', ?)", (embedding_id,))
    db.commit()
    db.close()
    return folder


def test_named_embedders_and_aliases(monkeypatch):
    monkeypatch.setattr(onnx_embeddings, "minilm_export_ready", lambda: True)
    assert type(embedder("all-minilm-l6-v2")) is OnnxEmbeddings
    assert type(embedder("minilm")) is OnnxEmbeddings
    assert embedder("bge-small").model == BGE_SMALL
    assert type(embedder("all-minilm-l6-v2-torch")) is SentenceTransformerEmbeddings
    with pytest.raises(ConfigurationError, match="Known: all-minilm-l6-v2"):
        embedder("word2vec")


def test_minilm_falls_back_to_pytorch_until_exported(monkeypatch):
    monkeypatch.setattr(onnx_embeddings, "minilm_export_ready", lambda: False)
    assert type(resolve_embedding(None)) is SentenceTransformerEmbeddings
    monkeypatch.setattr(onnx_embeddings, "minilm_export_ready", lambda: True)
    assert type(resolve_embedding(None)) is OnnxEmbeddings


def test_a_knowledge_base_keeps_its_embedder(monkeypatch, tmp_path):
    monkeypatch.setattr(onnx_embeddings, "minilm_export_ready", lambda: True)
    new = resolve_embedding(None, kb_folder=tmp_path / "new")
    assert embedding_id(new) == embedding_id(embedder(DEFAULT_NEW_EMBEDDER))
    built_minilm = manifest(tmp_path / "a", DEFAULT_EMBEDDING_ID)
    assert recorded_embedding(built_minilm) == DEFAULT_EMBEDDING_ID
    assert embedding_id(resolve_embedding(None, kb_folder=built_minilm)) == DEFAULT_EMBEDDING_ID
    built_bge = manifest(tmp_path / "b", BGE_SMALL)
    assert embedding_id(resolve_embedding(None, kb_folder=built_bge)) == BGE_SMALL
    empty = manifest(tmp_path / "c")
    assert recorded_embedding(empty) is None
    model_dir = tmp_path / "st-model"
    (model_dir).mkdir()
    (model_dir / "modules.json").write_text("[]")
    built_folder = manifest(tmp_path / "d", str(model_dir))
    assert resolve_embedding(None, kb_folder=built_folder).model_path == str(model_dir)
    custom = manifest(tmp_path / "e", "mymodule.MyEmbeddings")
    with pytest.raises(ConfigurationError, match=r"mymodule\.MyEmbeddings"):
        resolve_embedding(None, kb_folder=custom)
    # an explicit embedder is used as given (the knowledge base refuses it if it was built with another)
    assert embedding_id(resolve_embedding("bge-small", kb_folder=built_minilm)) == BGE_SMALL


def test_strings_that_are_not_names_are_model_folders(tmp_path):
    emb = resolve_embedding(str(tmp_path))
    assert type(emb) is SentenceTransformerEmbeddings
    assert emb.model_path == str(tmp_path)
    with pytest.raises(ConfigurationError):
        resolve_embedding(42)  # type: ignore[arg-type]


def test_unreadable_manifest_is_an_error(tmp_path):
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "manifest.sqlite").write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(CorruptManifestError, match="slmkit doctor"):
        recorded_embedding(folder)


# -- CLI -----------------------------------------------------------------------------------------------------------
def test_ingest_embedder_flag_picks_the_embedder_of_a_new_knowledge_base(monkeypatch, tmp_path):
    from slmkit import cli

    monkeypatch.setattr(onnx_embeddings, "minilm_export_ready", lambda: True)
    args = cli.build_parser().parse_args(["ingest", "docs", "--path", str(tmp_path), "--embedder", "bge-small"])
    assert embedding_id(cli._knowledge_base(args).embedding) == BGE_SMALL
    args = cli.build_parser().parse_args(["ingest", "docs", "--path", str(tmp_path)])
    assert embedding_id(cli._knowledge_base(args).embedding) == embedding_id(embedder(DEFAULT_NEW_EMBEDDER))
    manifest(tmp_path / "default", BGE_SMALL)  # an existing knowledge base: its own embedder, for every command
    args = cli.build_parser().parse_args(["search", "q", "--path", str(tmp_path)])
    assert embedding_id(cli._knowledge_base(args).embedding) == BGE_SMALL


def test_models_pull_prepares_named_embedders(monkeypatch, capsys):
    from slmkit import cli

    calls = []
    monkeypatch.setattr(cli, "_pull_embedder", lambda name, skip_missing: calls.append((name, skip_missing)))
    assert cli.main(["models", "pull", "all-minilm-l6-v2", "bge-small-en-v1.5"]) == 0
    assert calls == [(MINILM, False), (BGE_SMALL, False)]


def test_models_pull_all_skips_an_embedder_it_cannot_export(monkeypatch, capsys):
    from slmkit import cli
    from slmkit.core.errors import MissingDependencyError

    def no_torch(**_kwargs):
        raise MissingDependencyError("torch, transformers and onnx", extra="retrieval", purpose="exporting")

    monkeypatch.setattr(onnx_embeddings, "export_minilm", no_torch)
    cli._pull_embedder(MINILM, skip_missing=True)
    assert "all-minilm-l6-v2: skipped" in capsys.readouterr().out
    with pytest.raises(MissingDependencyError):
        cli._pull_embedder(MINILM, skip_missing=False)
