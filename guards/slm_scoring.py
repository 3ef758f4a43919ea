"""The local SLM as a grounding signal: is the answer more likely with the context than without it?

A sentence copied or faithfully condensed from the context becomes much more likely once the model has read the
context; an invented one does not (its tokens stay surprising, or were likely anyway). Per answer token:

    log p(token | context, question, earlier answer)  -  log p(token | question, earlier answer)  = token PMI

and per sentence: the mean PMI, the mean log-probability given the context, and the share of tokens that are both
unlikely given the context and not made likelier by it.

Anything that implements :class:`TokenScorer` can be the model. :class:`LlamaTokenScorer` implements it on a
``llama_cpp.Llama`` (it reuses the KV cache for the shared context prefix, and keeps ``Llama``'s own cache
bookkeeping right, so it can share a model with a chat model); ``slmkit.agent.grounding_scorer`` builds one on the
packaged SmolLM2.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol, runtime_checkable

import numpy as np

from slmkit.core.errors import ContextOverflowError, MissingDependencyError
from slmkit.guards.text import Sentence

__all__ = ["SLM_FEATURES", "LlamaTokenScorer", "TokenScorer", "slm_features"]

SLM_FEATURES = ("mean_pmi", "mean_logprob", "unexplained")
_CONTEXT_CHARS = 6000
"""Context kept for the SLM (about 1,500 tokens): small models lose the thread in longer prompts, and time grows."""
_UNLIKELY = math.log(0.05)


@runtime_checkable
class TokenScorer(Protocol):
    """Scores a continuation token by token under a language model."""

    def continuation_logprobs(self, prefix: str, continuation: str) -> list[tuple[str, float]]:
        """Each token of ``continuation`` (its text) with its log-probability given ``prefix`` and the tokens before."""
        ...


def slm_features(
    sentences: Sequence[Sentence], answer: str, context: str, question: str | None, scorer: TokenScorer
) -> np.ndarray:
    """Per sentence: mean token PMI, mean log-probability given the context, share of unexplained tokens."""
    ask = f"Question: {question.strip()}\n\n" if question else ""
    context = context if len(context) <= _CONTEXT_CHARS else context[:_CONTEXT_CHARS] + " ..."
    with_context = scorer.continuation_logprobs(
        f"Document:\n{context}\n\n{ask}Answer based only on the document:\n", answer
    )
    without = scorer.continuation_logprobs(f"{ask}Answer:\n", answer)
    n = min(len(with_context), len(without))
    offsets = np.cumsum([0] + [len(t) for t, _ in with_context[:n]])
    lp_c = np.array([lp for _, lp in with_context[:n]])
    pmi = lp_c - np.array([lp for _, lp in without[:n]])
    rows = []
    for sentence in sentences:
        # tokens whose text starts inside the sentence
        mask = (offsets[:-1] >= sentence.start - 1) & (offsets[:-1] < sentence.end)
        if not mask.any():
            rows.append((0.0, 0.0, 0.0))
            continue
        unexplained = (lp_c[mask] < _UNLIKELY) & (pmi[mask] < 1.0)
        rows.append((float(pmi[mask].mean()), float(lp_c[mask].mean()), float(unexplained.mean())))
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(SLM_FEATURES))


class LlamaTokenScorer:
    """:class:`TokenScorer` on a ``llama_cpp.Llama``: teacher-forced log-probabilities, KV cache reused.

    Example:
        .. code-block:: python

            from llama_cpp import Llama

            scorer = LlamaTokenScorer(Llama(model_path="model.gguf", n_ctx=4096, verbose=False))
            scorer.continuation_logprobs("The capital of France is", " Paris.")   # [(" Paris", -0.4), (".", -1.2)]

    ``lock`` serialises use with other users of the same ``Llama`` (e.g. ``LocalModel.lock`` of a chat model).
    """

    def __init__(self, llama: Any, *, lock: AbstractContextManager[Any] | threading.Lock | None = None) -> None:
        try:
            import llama_cpp
        except ImportError as exc:
            raise MissingDependencyError(
                "llama-cpp-python", extra="llama", purpose="the grounding guard's SLM signal"
            ) from exc
        self.llama = llama
        self._lib = llama_cpp
        self._lock = lock if lock is not None else nullcontext()
        self._n_batch = int(getattr(llama, "n_batch", 512))
        self._batch: Any = None
        self._pieces: dict[int, str] = {}

    def continuation_logprobs(self, prefix: str, continuation: str) -> list[tuple[str, float]]:
        llama = self.llama
        head = list(llama.tokenize(prefix.encode("utf-8"), add_bos=True, special=False))
        tail = list(llama.tokenize(continuation.encode("utf-8"), add_bos=False, special=False))
        if not tail:
            return []
        tokens = head + tail
        if len(tokens) > llama.n_ctx():
            raise ContextOverflowError(len(tokens), llama.n_ctx(), model="grounding scorer")
        with self._lock:
            logprobs = self._score(tokens, len(head))
        return [(self._piece(t), lp) for t, lp in zip(tail, logprobs, strict=True)]

    def _piece(self, token: int) -> str:
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self.llama.detokenize([token]).decode("utf-8", errors="replace")
        return piece

    def _score(self, tokens: list[int], first: int) -> list[float]:
        """Decode ``tokens`` (reusing the cached prefix); log-probabilities of ``tokens[first:]``."""
        lib, llama = self._lib, self.llama
        ctx = llama._ctx.ctx
        cached = int(llama.n_tokens)
        common = 0
        for a, b in zip(llama.input_ids[:cached], tokens, strict=False):
            if a != b:
                break
            common += 1
        start = min(common, first - 1)  # the logits predicting tokens[first] come from position first - 1
        lib.llama_memory_seq_rm(lib.llama_get_memory(ctx), 0, start, -1)
        llama.n_tokens = start
        if self._batch is None:
            self._batch = lib.llama_batch_init(self._n_batch, 0, 1)
        batch, n_vocab = self._batch, llama.n_vocab()
        out: list[float] = []
        for pos in range(start, len(tokens), self._n_batch):
            chunk = tokens[pos : pos + self._n_batch]
            batch.n_tokens = len(chunk)
            for i, token in enumerate(chunk):
                batch.token[i] = token
                batch.pos[i] = pos + i
                batch.seq_id[i][0] = 0
                batch.n_seq_id[i] = 1
                batch.logits[i] = first - 1 <= pos + i < len(tokens) - 1
            if lib.llama_decode(ctx, batch) != 0:
                raise RuntimeError("llama_decode failed while scoring an answer for grounding")
            for i in range(len(chunk)):
                if batch.logits[i]:
                    ptr = lib.llama_get_logits_ith(ctx, i)
                    logits = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(n_vocab,))
                    peak = float(logits.max())
                    log_z = peak + math.log(float(np.exp(logits - peak).sum()))
                    out.append(float(logits[tokens[pos + i + 1]]) - log_z)
            llama.input_ids[pos : pos + len(chunk)] = chunk
            llama.n_tokens = pos + len(chunk)
        return out

    def __del__(self) -> None:
        batch, self._batch = getattr(self, "_batch", None), None
        if batch is not None:
            with contextlib.suppress(Exception):  # the library may already be torn down at interpreter exit
                self._lib.llama_batch_free(batch)
