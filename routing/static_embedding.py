"""A static token-embedding table distilled from the packaged MiniLM: a prompt vector in under a millisecond.

A routing decision must cost milliseconds, but one MiniLM forward pass over a prompt costs 10-30 ms on two cores.
So, once per model, every vocabulary token is run through the model on its own (``[CLS] token [SEP]``, the token's
output row kept), the rows are centred and their two main directions removed (common to all tokens, they only
inflate similarities), and the table is saved as float16 in the slmkit cache, keyed by the model folder's content:

    model folder ──(first use, 13-40 s on 2 cores, progress bar)──► table (vocabulary × 384, float16) in the cache
    prompt ──► tokenizer ──► token ids ──► weighted mean of their rows ──► L2-normalised vector   (~0.5 ms)

Weights make frequent words count less (vocabularies are ordered by frequency): ``"sif"`` (r / (r + 1000), r the
token's frequency rank; similarity scores on MiniLM's scale, so semantic thresholds carry over) or ``"zipf"``
(log(1 + token id), as model2vec; keeps more of the function words, which the learned router uses). The figures
behind both choices are in benchmarks/results/routing.md. Nothing is downloaded: the table comes from the local model.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field

from slmkit.core.config import cache_dir
from slmkit.core.embeddings import DEFAULT_EMBEDDING_ID, fast_tokenizer, packaged_model_dir, quiet_local_loading
from slmkit.core.errors import ConfigurationError, MissingDependencyError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["TABLE_FORMAT", "StaticEmbeddings"]

TABLE_FORMAT = "static-v1"
"""Versioned name of the table recipe; part of the cache file name, so a changed recipe never reads an old table."""
_REMOVED_DIRECTIONS = 2
_SIF_A = 1000.0
_BATCH = 1024
_DIGEST_SPAN = 1 << 20


class StaticEmbeddings(BaseModel, Embeddings):
    """Prompt vectors from a token table distilled from a sentence-transformers model (default: packaged MiniLM).

    Example:
        .. code-block:: python

            emb = StaticEmbeddings()                      # table built on first use, then read from the cache
            emb.embed_query("Write a function that sorts a list")
            Semantic(utterances=..., embeddings=StaticEmbeddings())
            LearnedRouter(StaticEmbeddings(weighting="zipf"))
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_path: str | None = None
    """A BERT-style model folder (``config.json``, weights, ``tokenizer.json``); None: the packaged MiniLM."""
    weighting: Literal["sif", "zipf"] = "sif"
    """How much each token counts: ``sif`` (frequent words nearly nothing) or ``zipf`` (log of the token id)."""
    cache_dir: str | None = None
    """Where tables are kept; None: ``slmkit.core.config.cache_dir()``."""
    show_progress: bool = True
    """Show a progress bar while a table is built (once per model)."""
    batch_size: int = Field(default=_BATCH, ge=1)
    """Tokens per forward pass while building."""

    @property
    def folder(self) -> Path:
        if self.model_path is None:
            return packaged_model_dir()
        folder = Path(self.model_path).expanduser()
        if not (folder / "config.json").is_file() or not (folder / "tokenizer.json").is_file():
            raise ConfigurationError(
                f"{folder} is not a model folder StaticEmbeddings can distil (it needs config.json and "
                "tokenizer.json). Pass a sentence-transformers/transformers folder, or leave model_path unset."
            )
        return folder

    @property
    def model_name(self) -> str:
        """Names the vectors (saved routers check it): recipe, source model and weighting."""
        source = DEFAULT_EMBEDDING_ID if self.model_path is None else str(Path(self.model_path).expanduser().resolve())
        return f"{TABLE_FORMAT}:{source}:{self.weighting}"

    def table_path(self) -> Path:
        """The cache file of this model's table (it need not exist yet)."""
        root = Path(self.cache_dir).expanduser() if self.cache_dir else cache_dir()
        return root / "static-embeddings" / f"{TABLE_FORMAT}-{_folder_digest(str(self.folder))}.npy"

    def warm_up(self) -> None:
        """Load the table (building it first if it is not cached), so the first request pays nothing."""
        self._index()

    def _index(self) -> _Index:
        folder, path = str(self.folder), str(self.table_path())
        return _load_index(folder, path, self.weighting, self.show_progress, self.batch_size)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text (a text without tokens gives a zero row)."""
        return self._index().encode(texts)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encode(list(texts)).tolist() if texts else []

    def embed_query(self, text: str) -> list[float]:
        return list(self.encode([text])[0].tolist())


class _Index:
    """A loaded table with its tokenizer and token weights."""

    def __init__(self, tokenizer: Any, table: np.ndarray, weights: np.ndarray) -> None:
        self.tokenizer, self.table, self.weights = tokenizer, table, weights

    def encode(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        out = np.zeros((len(texts), self.table.shape[1]), dtype=np.float32)
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=False) if len(texts) > 1 else None
        for row, text in enumerate(texts):
            enc = encodings[row] if encodings is not None else self.tokenizer.encode(text, add_special_tokens=False)
            ids = np.asarray(enc.ids, dtype=np.int64)
            if len(ids):
                vector = self.weights[ids] @ self.table[ids]
                norm = float(np.linalg.norm(vector))
                if norm > 0:
                    out[row] = vector / norm
        return out


_lock = threading.Lock()


@functools.lru_cache(maxsize=8)
def _load_index(folder: str, path: str, weighting: str, show_progress: bool, batch_size: int) -> _Index:
    tokenizer = _tokenizer(folder)
    table = _load_table(folder, path, show_progress, batch_size)
    size = tokenizer.get_vocab_size()
    if table.ndim != 2 or table.shape[0] != size:
        raise ConfigurationError(
            f"The static-embedding table {path} has shape {table.shape}, not ({size}, dim) for this tokenizer; "
            "delete the file and it is rebuilt on next use."
        )
    return _Index(tokenizer, table, token_weights(tokenizer.get_vocab(), weighting))


@functools.lru_cache(maxsize=4)
def _load_table(folder: str, path: str, show_progress: bool, batch_size: int) -> np.ndarray:
    """The table in float32, read once per process (both weightings share it), built first if not cached."""
    import numpy as np

    with _lock:  # one build per process, even when several threads ask at once
        table_file = Path(path)
        if not table_file.is_file():
            table = build_table(folder, show_progress=show_progress, batch_size=batch_size)
            table_file.parent.mkdir(parents=True, exist_ok=True)
            partial = table_file.with_suffix(f".{os.getpid()}.tmp.npy")
            np.save(partial, table.astype(np.float16))
            os.replace(partial, table_file)  # atomic: another process never reads half a table
        return np.asarray(np.load(table_file), dtype=np.float32)


def _tokenizer(folder: str) -> Any:
    """The fast tokenizer, untruncated: a long prompt is averaged whole (no position limit without a forward pass)."""
    try:
        tokenizer = fast_tokenizer(folder)
    except ImportError as exc:
        raise MissingDependencyError("tokenizers", extra="routing", purpose="static embeddings") from exc
    if tokenizer is None:
        raise ConfigurationError(f"{folder} has no tokenizer.json; StaticEmbeddings needs the fast tokenizer file.")
    return tokenizer


def token_weights(vocab: dict[str, int], weighting: str) -> np.ndarray:
    """Weight per token id. Ranks count from the first whole word (BERT vocabularies: ``[unused]`` slots and
    single characters first, then words by frequency); tokens before it get rank 1."""
    import numpy as np

    size = max(vocab.values()) + 1
    ids = np.arange(size, dtype=np.float64)
    if weighting == "zipf":
        return np.asarray(np.log1p(ids), dtype=np.float32)
    if weighting != "sif":
        raise ConfigurationError(f"Unknown weighting {weighting!r}; use 'sif' or 'zipf'.")
    words = [i for t, i in vocab.items() if len(t) > 1 and t.isalpha() and t.isascii()]
    first = min(words) if words else 0
    rank = np.maximum(ids - first + 1, 1.0)
    return np.asarray(rank / (rank + _SIF_A), dtype=np.float32)


def build_table(folder: str, *, show_progress: bool = True, batch_size: int = _BATCH) -> np.ndarray:
    """Run every vocabulary token through the model once; rows centred, main common directions removed."""
    import numpy as np

    try:
        import torch
        from transformers import AutoModel
    except ImportError as exc:
        raise MissingDependencyError("transformers", extra="retrieval", purpose="building static embeddings") from exc
    from tqdm.auto import tqdm

    tokenizer = _tokenizer(folder)
    vocab_size = tokenizer.get_vocab_size()
    bos, eos = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    if bos is None or eos is None:
        raise ConfigurationError(f"{folder}: StaticEmbeddings distils BERT-style models ([CLS]/[SEP] tokens) only.")
    with quiet_local_loading():
        model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    rows = np.zeros((vocab_size, model.config.hidden_size), dtype=np.float32)
    bar = tqdm(total=vocab_size, desc="slmkit: distilling static embeddings", unit="tok", disable=not show_progress)
    with torch.inference_mode():
        for start in range(0, vocab_size, batch_size):
            ids = torch.arange(start, min(vocab_size, start + batch_size))
            inputs = torch.stack([torch.full_like(ids, bos), ids, torch.full_like(ids, eos)], dim=1)
            hidden = model(input_ids=inputs, attention_mask=torch.ones_like(inputs)).last_hidden_state
            rows[start : start + len(ids)] = hidden[:, 1].numpy()
            bar.update(len(ids))
    bar.close()
    return remove_common_directions(rows, _REMOVED_DIRECTIONS)


def remove_common_directions(rows: np.ndarray, count: int) -> np.ndarray:
    """Centre the rows and project out their ``count`` main directions ("all-but-the-top")."""
    import numpy as np

    centred = rows - rows.mean(axis=0)
    if count:
        directions = np.linalg.svd(centred, full_matrices=False)[2][:count]
        centred = centred - (centred @ directions.T) @ directions
    return np.asarray(centred, dtype=np.float32)


@functools.lru_cache(maxsize=8)
def _folder_digest(folder: str) -> str:
    """SHA-256 over the folder's file names, sizes and first and last MiB: another model never reads this model's
    table, without reading 90 MB of weights at every start."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        size = path.stat().st_size
        digest.update(f"{path.relative_to(folder)}\0{size}\0".encode())
        with path.open("rb") as fh:
            digest.update(fh.read(_DIGEST_SPAN))
            if size > 2 * _DIGEST_SPAN:
                fh.seek(-_DIGEST_SPAN, os.SEEK_END)
                digest.update(fh.read(_DIGEST_SPAN))
    return digest.hexdigest()[:16]
