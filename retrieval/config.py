"""Settings of a knowledge base, and where knowledge bases live by default.

Defaults were measured on SciFact train claims (``benchmarks/retrieval_tune.py``; figures in
``benchmarks/results/retrieval.md``), not guessed: 256-token chunks with 32 overlapping beat 128 and whole
abstracts for the hybrid retriever, and BM25 k1=0.9, b=0.4 was best of a 12-point grid.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pydantic import Field, model_validator

from slmkit.core.config import SlmkitConfig
from slmkit.core.errors import ConfigurationError

__all__ = ["DEFAULT_KB_NAME", "KnowledgeBaseConfig", "check_kb_name", "default_kb_root"]

DEFAULT_KB_NAME = "default"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]")


def default_kb_root() -> Path:
    """Folder for knowledge bases: ``$SLMKIT_HOME/kb``, else ``~/.local/share/slmkit/kb``."""
    if home := os.environ.get("SLMKIT_HOME"):
        return Path(home).expanduser() / "kb"
    return Path.home() / ".local" / "share" / "slmkit" / "kb"


def check_kb_name(name: str) -> str:
    """Knowledge-base names double as Chroma collection names and folder names."""
    if not _NAME.fullmatch(name) or ".." in name:
        raise ConfigurationError(
            f"Invalid knowledge-base name {name!r}: use 3-512 letters, digits, '.', '_' or '-', starting and "
            "ending with a letter or digit (e.g. 'papers' or 'team-notes')."
        )
    return name


class KnowledgeBaseConfig(SlmkitConfig):
    """How documents are chunked and indexed.

    Changing ``chunk_size`` or ``chunk_overlap`` for an existing knowledge base is allowed: the next ``ingest``
    splits every file again (only chunks whose text changed are embedded again).
    """

    chunk_size: int = Field(default=256, ge=16)
    """Most tokens in a chunk, heading line included: the embedder's tokens for sentence-transformers models
    (all-MiniLM-L6-v2 reads 256), tiktoken ``cl100k_base`` tokens for other embedders."""
    chunk_overlap: int = Field(default=32, ge=0)
    """Tokens shared by neighbouring chunks (whole sentences where possible)."""
    batch_chunks: int = Field(default=512, ge=1)
    """Chunks embedded and staged together (a piece): small files share a piece and a commit, a big file is
    embedded piece by piece and committed once all of its pieces are staged. An interrupted ingestion loses at most
    the piece it was embedding; staged pieces are kept, even those of a file not yet committed."""
    bm25_k1: float = Field(default=0.9, gt=0)
    """BM25 term-frequency saturation (Anserini's default, best of the grid on SciFact train chunks)."""
    bm25_b: float = Field(default=0.4, ge=0, le=1)
    """BM25 length normalisation (Anserini's default; chunks vary little in length)."""

    @model_validator(mode="after")
    def _overlap_below_half(self) -> KnowledgeBaseConfig:
        if self.chunk_overlap >= self.chunk_size // 2:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be below half of chunk_size ({self.chunk_size})."
            )
        return self

    def splitting_fingerprint(self, counter: str) -> str:
        """Changes exactly when a file must be split again."""
        return f"v1:{self.chunk_size}:{self.chunk_overlap}:{counter}"
