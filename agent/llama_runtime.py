"""Loaded llama.cpp models, shared per settings, and the token loop that every local call goes through.

``acquire(settings)`` returns the one :class:`LocalModel` for a (file, context size, threads, batch) combination,
loading the GGUF on first use; chat models that only differ in sampling share it and its KV cache. ``LocalModel``
renders messages with the GGUF's own chat template, and ``LocalModel.generate`` runs the sampling loop:

    prompt tokens -> (reuse the longest cached prefix) -> sample -> per-token log-probability -> UTF-8 decode
    -> hold back text that may start a stop sequence -> TextDelta ... -> Completion (counts, finish reason, confidence)

llama.cpp contexts are not thread-safe, so each model has a lock held for a whole generation.
"""

from __future__ import annotations

import codecs
import ctypes
import math
import os
import threading
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
from pydantic import BaseModel, ConfigDict

from slmkit.agent.catalogue import CATALOGUE, resolve_model_path
from slmkit.core.errors import ContextOverflowError, MissingDependencyError, ModelLoadError

__all__ = [
    "Completion",
    "LocalModel",
    "RuntimeSettings",
    "SamplingParams",
    "TextDelta",
    "acquire",
    "default_threads",
]

# ChatML, used only when a GGUF carries no chat template (e.g. base models).
_FALLBACK_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_RANDOM_SEED = 0xFFFFFFFF  # llama.cpp's LLAMA_DEFAULT_SEED: a fresh random seed per call


def default_threads() -> int:
    """All cores this process may use: llama-cpp-python's default (half the cores) idles a 2-core laptop."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class RuntimeSettings(BaseModel):
    """What a loaded model is keyed on: two chat models with equal settings share one llama.cpp context."""

    model_config = ConfigDict(frozen=True)

    model: str
    """Catalogue id or path to a ``.gguf`` file."""
    n_ctx: int
    n_threads: int
    n_batch: int
    flash_attn: bool = False


class SamplingParams(BaseModel):
    """Per-call sampling settings (llama.cpp names)."""

    temperature: float = 0.2
    top_p: float = 0.9
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    seed: int | None = None
    max_tokens: int | None = None
    stop: list[str] = []


@dataclass
class TextDelta:
    """A piece of generated text, safe to show (never part of a stop sequence)."""

    text: str
    token_logprobs: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class Completion:
    """The end of a generation: counts, why it stopped, and how sure the model was."""

    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    logprobs: list[float]
    prompt_ms: float
    total_ms: float

    def confidence(self) -> dict[str, float]:
        """Summaries of the sampled tokens' probabilities, for cascades that escalate unsure answers."""
        if not self.logprobs:
            return {}
        lps = np.asarray(self.logprobs, dtype=np.float64)
        probs = np.exp(lps)
        return {
            "mean_logprob": float(lps.mean()),
            "geometric_mean_prob": float(math.exp(lps.mean())),
            "mean_prob": float(probs.mean()),
            "min_prob": float(probs.min()),
            "tokens_below_0.5": int((probs < 0.5).sum()),
        }


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise MissingDependencyError(
            "llama-cpp-python", purpose="running a local GGUF model (build it with `make setup`)"
        ) from exc
    return llama_cpp


class LocalModel:
    """One loaded GGUF: its llama.cpp context, chat template and lock."""

    def __init__(self, llama: Any, name: str, path: Path) -> None:
        llama_cpp = _import_llama_cpp()
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.llama = llama
        self.name = name
        self.path = path
        self.lock = threading.Lock()
        self.n_ctx: int = llama.n_ctx()
        self.n_vocab: int = llama.n_vocab()
        self._llama_cpp = llama_cpp
        self._pieces: dict[int, bytes] = {}
        self._logits_type = ctypes.c_float * self.n_vocab
        self._scratch = np.empty(self.n_vocab, dtype=np.float32)
        vocab = llama._model
        template = llama.metadata.get("tokenizer.chat_template") or _FALLBACK_TEMPLATE
        self.has_chat_template = "tokenizer.chat_template" in llama.metadata
        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=vocab.token_get_text(llama.token_eos()),
            bos_token=vocab.token_get_text(llama.token_bos()) if llama.token_bos() >= 0 else "",
        )

    # -- prompts -----------------------------------------------------------------------------------------------
    def render(self, messages: list[dict[str, str]]) -> list[int]:
        """Chat messages -> prompt tokens, exactly as ``Llama.create_chat_completion`` would build them."""
        try:
            result = self._formatter(messages=cast(Any, messages))
        except Exception as exc:  # jinja raises many types; the template's own message is the useful part
            raise ValueError(f"The chat template of {self.name} rejected the messages: {exc}") from exc
        return self.tokenize(result.prompt, add_bos=not result.added_special)

    def tokenize(self, text: str, *, add_bos: bool = False) -> list[int]:
        return list(self.llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))

    def piece(self, token: int) -> bytes:
        """The bytes of one token (cached: a token's text never changes)."""
        cached = self._pieces.get(token)
        if cached is None:
            buf = ctypes.create_string_buffer(256)
            n = self._llama_cpp.llama_token_to_piece(self.llama._model.vocab, token, buf, len(buf), 0, False)
            cached = self._pieces[token] = buf.raw[: max(n, 0)]
        return cached

    def _sampled_logprob(self, ctx: Any, token: int) -> float:
        """Log-probability of ``token`` under the raw next-token distribution it was sampled from.

        llama.cpp keeps the logits of the last decoded position until the next decode, and ``Llama.generate``
        yields each token before decoding it, so they are still the ones the sampler saw. ~50 µs for a 50k
        vocabulary: well under 1% of a decode step.
        """
        ptr = self._llama_cpp.llama_get_logits_ith(ctx, -1)
        logits = np.frombuffer(self._logits_type.from_address(ctypes.addressof(ptr.contents)), dtype=np.float32)
        peak = logits.max()
        np.subtract(logits, peak, out=self._scratch)
        np.exp(self._scratch, out=self._scratch)
        return float(logits[token] - peak) - math.log(float(self._scratch.sum()))

    def check_fits(self, n_prompt: int) -> None:
        # One slot must stay free for the first generated token.
        if n_prompt >= self.n_ctx:
            raise ContextOverflowError(n_prompt, self.n_ctx, model=self.name)

    # -- generation --------------------------------------------------------------------------------------------
    def generate(
        self,
        prompt: Sequence[int],
        params: SamplingParams,
        *,
        grammar: Any = None,
        with_logprobs: bool = True,
        token_texts: bool = False,
    ) -> Generator[TextDelta | Completion, None, None]:
        """Yield text deltas, then one :class:`Completion`. Holds the model lock until exhausted or closed."""
        self.check_fits(len(prompt))
        with self.lock:
            yield from self._generate_locked(list(prompt), params, grammar, with_logprobs, token_texts)

    def _generate_locked(
        self,
        prompt: list[int],
        params: SamplingParams,
        grammar: Any,
        with_logprobs: bool,
        token_texts: bool,
    ) -> Generator[TextDelta | Completion, None, None]:
        llama, llama_cpp = self.llama, self._llama_cpp
        start = time.perf_counter()
        # llama.cpp re-evaluates at least the last prompt token unless the whole prompt is already cached.
        cached = min(_common_prefix(llama.input_ids[: llama.n_tokens], prompt), len(prompt) - 1)
        room = self.n_ctx - len(prompt)
        limit = room if params.max_tokens is None else min(params.max_tokens, room)
        llama.set_seed(params.seed if params.seed is not None else _RANDOM_SEED)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = [s for s in params.stop if s]
        vocab = llama._model.vocab
        ctx = llama._ctx.ctx
        logprobs: list[float] = []
        pending = ""
        pending_lp: list[tuple[str, float]] = []
        n_out = 0
        finish = "length"
        cut_at_stop = False
        prompt_ms = 0.0
        tokens = llama.generate(
            prompt,
            temp=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            min_p=params.min_p,
            repeat_penalty=params.repeat_penalty,
            grammar=grammar,
        )
        try:
            for token in tokens:
                if n_out == 0:
                    prompt_ms = (time.perf_counter() - start) * 1000
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    finish = "stop"
                    break
                n_out += 1
                piece = decoder.decode(self.piece(token))
                if with_logprobs:
                    logprob = self._sampled_logprob(ctx, token)
                    logprobs.append(logprob)
                    if token_texts:
                        pending_lp.append((piece, logprob))
                pending += piece
                if stops:
                    cut = _first_stop(pending, stops)
                    if cut is not None:
                        pending = pending[:cut]
                        finish, cut_at_stop = "stop", True
                        break
                    keep = _stop_prefix_len(pending, stops)
                else:
                    keep = 0
                if len(pending) > keep:
                    emit, pending = pending[: len(pending) - keep], pending[len(pending) - keep :]
                    yield TextDelta(emit, pending_lp)
                    pending_lp = []
                if n_out >= limit:
                    break
        finally:
            tokens.close()
        if not cut_at_stop:
            pending += decoder.decode(b"", final=True)
        if pending:
            yield TextDelta(pending, pending_lp)
        if n_out == 0 and prompt_ms == 0.0:
            prompt_ms = (time.perf_counter() - start) * 1000
        yield Completion(
            finish_reason=finish,
            prompt_tokens=len(prompt),
            completion_tokens=n_out,
            cached_tokens=cached,
            logprobs=logprobs,
            prompt_ms=prompt_ms,
            total_ms=(time.perf_counter() - start) * 1000,
        )


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _first_stop(text: str, stops: list[str]) -> int | None:
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None


def _stop_prefix_len(text: str, stops: list[str]) -> int:
    """Length of the longest tail of ``text`` that could still grow into a stop sequence."""
    best = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:k]):
                best = k
                break
    return best


_MODELS: dict[RuntimeSettings, LocalModel] = {}
_MODELS_LOCK = threading.Lock()


def acquire(settings: RuntimeSettings, *, show_progress: bool = False) -> LocalModel:
    """The shared :class:`LocalModel` for ``settings``, loading it on first use."""
    with _MODELS_LOCK:
        loaded = _MODELS.get(settings)
        if loaded is None:
            loaded = _MODELS[settings] = _load(settings, show_progress)
        return loaded


def _load(settings: RuntimeSettings, show_progress: bool) -> LocalModel:
    path = resolve_model_path(settings.model, show_progress=show_progress)
    _import_llama_cpp()
    from llama_cpp import Llama

    try:
        llama = Llama(
            model_path=str(path),
            n_ctx=settings.n_ctx,
            n_threads=settings.n_threads,
            n_threads_batch=settings.n_threads,
            n_batch=settings.n_batch,
            flash_attn=settings.flash_attn,
            verbose=False,
        )
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelLoadError(
            f"llama.cpp could not load {path}: {exc}. The file may be damaged (re-run `slmkit models pull "
            f"{settings.model}` for a catalogue model) or need a newer llama-cpp-python."
        ) from exc
    name = settings.model if settings.model in CATALOGUE else Path(settings.model).stem
    return LocalModel(llama, name, path)
