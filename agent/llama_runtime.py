"""Loaded llama.cpp models, shared per settings, and the token loop that every local call goes through.

``acquire(settings)`` returns the one :class:`LocalModel` for a (file, context size, threads, batch) combination,
loading the GGUF on first use; chat models that only differ in sampling share it and its KV cache. ``LocalModel``
renders messages with the GGUF's own chat template, and ``LocalModel.generate`` runs the sampling loop:

    prompt tokens -> (reuse the longest cached prefix) -> sample -> per-token log-probability -> UTF-8 decode
    -> hold back text that may start a stop sequence -> TextDelta ... -> Completion (counts, finish reason, confidence)

With greedy decoding (temperature 0, no grammar) the loop speculates (``SamplingParams.prompt_lookup``): the
tokens that followed the answer's last few tokens earlier in the prompt are drafted (``prompt_lookup``), decoded in one
batch together with the last token, and kept as long as the sampler picks them; the first token it picks instead is
the next token. The sampler chain runs on every position exactly as in the plain loop, so the text is the same.

llama.cpp contexts are not thread-safe, so each model has a lock held for a whole generation.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import math
import os
import threading
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

from slmkit.agent.catalogue import CATALOGUE, resolve_model_path
from slmkit.agent.prompt_lookup import DraftStats, NgramDrafter, speculate
from slmkit.core.errors import ContextOverflowError, MissingDependencyError, ModelLoadError

__all__ = [
    "DEFAULT_PROMPT_LOOKUP",
    "Completion",
    "LocalModel",
    "RuntimeSettings",
    "SamplingParams",
    "TextDelta",
    "acquire",
    "check_kv_cache",
    "default_threads",
]

# ChatML, used only when a GGUF carries no chat template (e.g. base models).
_FALLBACK_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_log = logging.getLogger(__name__)
_RANDOM_SEED = 0xFFFFFFFF  # llama.cpp's LLAMA_DEFAULT_SEED: a fresh random seed per call
_MAX_BATCH = 24  # longest draft verified at once, plus one; the calibration text must be longer
_CALIBRATION_TEXT = (
    "The GridBox 3 stores 13.5 kWh and has a 10-year warranty. Error E17 means the battery temperature is outside "
    "the safe range, below -10 C or above 50 C; E42 means the connection to the grid meter was lost. Installation "
    "takes about half a day and must be done by a certified partner, because the unit weighs 118 kg."
)
DEFAULT_PROMPT_LOOKUP = 0
"""Draft length of prompt-lookup decoding by default: off, as it was slower than plain decoding for both catalogue
models on the QA benchmark's answers (``benchmarks/prompt_lookup.py``, figures in ``benchmarks/RESULTS.md``)."""


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
    """llama.cpp's fused attention. With a ``q8_0`` KV cache it computes a token alone and as a batch row alike,
    which prompt-lookup decoding needs to give the plain loop's text."""
    kv_cache: Literal["f16", "q8_0"] = "f16"
    """Type of the KV cache's keys and values (``q8_0`` needs ``flash_attn``). With F16 and more than one thread,
    llama.cpp splits a lone token's attention over >= 512 cached ones across threads, a batch row's not: the
    last bits differ, so prompt lookup stays off."""

    @model_validator(mode="after")
    def _quantized_cache_needs_flash_attn(self) -> RuntimeSettings:
        check_kv_cache(self.kv_cache, self.flash_attn)
        return self


def check_kv_cache(kv_cache: str, flash_attn: bool) -> None:
    """Raise ``ValueError`` for a quantized KV cache without flash attention (llama.cpp quantizes V only with it)."""
    if kv_cache != "f16" and not flash_attn:
        raise ValueError(f"kv_cache={kv_cache!r} needs flash_attn=True (llama.cpp quantizes V only then)")


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
    prompt_lookup: int | None = DEFAULT_PROMPT_LOOKUP
    """Draft tokens per step of prompt-lookup decoding (greedy, grammar-free calls only); None or 0: off."""


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
    drafted: int = 0
    """Prompt-lookup tokens drafted (0 when the plain loop ran)."""
    accepted: int = 0
    """Drafted tokens the model agreed with (each saved one decode step)."""

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
        self._exact_batches: dict[int, int] = {}
        self._warned_lookup = False
        params = llama.context_params
        # Speculation must not change greedy text, so it needs attention computed alike for a lone token and a
        # batch row (flash attention over a quantized KV cache, see RuntimeSettings) and a state that can drop a
        # rejected draft (not recurrent models). Matmul kernels are checked by _exact_batch.
        self._can_speculate = (
            params.flash_attn_type == llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
            and params.type_k == params.type_v == llama_cpp.GGML_TYPE_Q8_0
            and not getattr(llama, "_is_recurrent", False)
            and not getattr(llama, "_is_hybrid", False)
        )
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

    def _sampled_logprob(self, token: int, idx: int = -1) -> float:
        """Log-probability of ``token`` under the raw next-token distribution it was sampled from.

        llama.cpp keeps the logits of the last decode (row ``idx`` of its batch) until the next decode, and both
        token loops yield each token before decoding again, so they are still the ones the sampler saw. ~50 µs
        for a 50k vocabulary: well under 1% of a decode step.
        """
        logits = self._logits(idx)
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
        n_draft = self._draft_length(params, grammar)  # first: its one-off calibration clears the KV cache
        # llama.cpp re-evaluates at least the last prompt token unless the whole prompt is already cached.
        cached = min(_common_prefix(llama.input_ids[: llama.n_tokens], prompt), len(prompt) - 1)
        room = self.n_ctx - len(prompt)
        limit = room if params.max_tokens is None else min(params.max_tokens, room)
        llama.set_seed(params.seed if params.seed is not None else _RANDOM_SEED)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = [s for s in params.stop if s]
        vocab = llama._model.vocab
        logprobs: list[float] = []
        pending = ""
        pending_lp: list[tuple[str, float]] = []
        n_out = 0
        finish = "length"
        cut_at_stop = False
        prompt_ms = 0.0
        stats = DraftStats()
        tokens = (
            self._lookup_tokens(prompt, params, n_draft, limit, stats)
            if n_draft
            else self._plain_tokens(prompt, params, grammar)
        )
        try:
            for token, idx in tokens:
                if n_out == 0:
                    prompt_ms = (time.perf_counter() - start) * 1000
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    finish = "stop"
                    break
                n_out += 1
                piece = decoder.decode(self.piece(token))
                if with_logprobs:
                    logprob = self._sampled_logprob(token, idx)
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
            drafted=stats.drafted,
            accepted=stats.accepted,
        )

    # -- token sources: each yields (token, row of the last batch holding the logits it was sampled from) ----------
    def _draft_length(self, params: SamplingParams, grammar: Any) -> int:
        """Tokens to draft per step (0: plain decoding). Only greedy, grammar-free calls speculate: a sampled
        token is not a function of the logits alone, so accepting drafted ones would change the distribution,
        and a grammar-constrained one rarely equals a copied one. A draft and the last token must fit one batch
        that llama.cpp computes exactly as it computes single tokens (``_exact_batch``)."""
        if not params.prompt_lookup or params.temperature > 0 or grammar is not None:
            return 0
        if not self._can_speculate:
            if not self._warned_lookup:
                self._warned_lookup = True
                _log.warning(
                    "prompt_lookup=%s is ignored for %s: drafts are verified exactly only with flash_attn=True and "
                    "kv_cache='q8_0' (see RuntimeSettings); decoding one token at a time",
                    params.prompt_lookup,
                    self.name,
                )
            return 0
        exact = self._exact_batch(min(params.prompt_lookup + 1, _MAX_BATCH, self.llama.n_batch))
        return exact - 1 if exact > 1 else 0

    def _exact_batch(self, upto: int) -> int:
        """The largest batch (<= ``upto``) whose logits equal one-token decoding bit for bit; measured once.

        A draft is verified in one batch, and llama.cpp computes a batch with other kernels than a single token
        (e.g. repacked-weight GEMM from 4 rows, tiled matmul from 8): bit-level differences there can flip a
        near-tie, and greedy text must not depend on drafts. So a fixed text is decoded token by token and in
        batches of 2, 3, ... rows, and speculation uses batches up to the last size that matched exactly.
        """
        if upto not in self._exact_batches:
            llama = self.llama
            tokens = self.tokenize(_CALIBRATION_TEXT)
            context, probe = tokens[: len(tokens) - upto], tokens[len(tokens) - upto :]
            llama.reset()
            llama.eval(context)
            single = []
            for token in probe:
                llama.eval([token])
                single.append(self._logits(-1).copy())
            exact = 1
            for size in range(2, upto + 1):
                self._truncate(len(context))
                self._decode_rows(probe[:size])
                if not all(np.array_equal(self._logits(i), single[i]) for i in range(size)):
                    break
                exact = size
            llama.reset()
            self._exact_batches[upto] = exact
        return self._exact_batches[upto]

    def _logits(self, idx: int) -> np.ndarray[Any, np.dtype[np.float32]]:
        """The logits of row ``idx`` of the last batch (a view: valid until the next decode)."""
        ptr = self._llama_cpp.llama_get_logits_ith(self.llama._ctx.ctx, idx)
        return np.frombuffer(self._logits_type.from_address(ctypes.addressof(ptr.contents)), dtype=np.float32)

    def _plain_tokens(
        self, prompt: list[int], params: SamplingParams, grammar: Any
    ) -> Generator[tuple[int, int], None, None]:
        """One token per decode, through llama-cpp-python's own loop (prefix cache included)."""
        tokens = self.llama.generate(
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
                yield token, -1
        finally:
            tokens.close()

    def _lookup_tokens(
        self, prompt: list[int], params: SamplingParams, n_draft: int, limit: int, stats: DraftStats
    ) -> Generator[tuple[int, int], None, None]:
        """Prompt-lookup decoding (``prompt_lookup.speculate``) on this context.

        The sampler chain is llama-cpp-python's own (``_init_sampler``, as ``Llama.generate`` builds it). It picks
        a token on every row in order and records each pick, and picking stops at the first pick that differs
        from the draft, so its repeat-penalty window holds exactly the tokens the plain loop would have given
        it: with exact batches (``_exact_batch``) the output is the plain loop's, token for token.
        ``input_ids``/``n_tokens`` always describe what the KV cache holds, so prefix reuse keeps working.
        """
        llama = self.llama
        sampler = llama._init_sampler(
            top_k=params.top_k,
            top_p=params.top_p,
            min_p=params.min_p,
            temp=params.temperature,
            repeat_penalty=params.repeat_penalty,
        )
        try:
            self._eval_prompt(prompt)
            first = int(sampler.sample(llama._ctx, -1))
            yield first, -1
            yield from speculate(
                first, NgramDrafter(prompt), _Verifier(self, sampler), n_draft=n_draft, limit=limit, stats=stats
            )
        finally:
            # The last batch's logits may belong to a rejected draft: never let llama.generate sample from them.
            llama._requires_eval = True
            sampler.close()

    def _eval_prompt(self, prompt: list[int]) -> None:
        """Evaluate the prompt after the longest cached prefix, as ``Llama.generate`` does (at least one token is
        evaluated, so the logits are the prompt's)."""
        llama = self.llama
        reuse = min(_common_prefix(llama.input_ids[: llama.n_tokens], prompt), len(prompt) - 1)
        if reuse > 0 and llama._ctx.kv_cache_seq_rm(-1, reuse, -1):
            llama.n_tokens = reuse
        else:
            llama.reset()
        llama.eval(prompt[llama.n_tokens :])

    def _decode_rows(self, batch: list[int]) -> int:
        """Decode ``batch`` after the cache with logits for every row; returns the position of its first token."""
        llama = self.llama
        n_past = int(llama.n_tokens)
        llama._ctx.kv_cache_seq_rm(-1, n_past, -1)
        llama._batch.set_batch(batch=batch, n_past=n_past, logits_all=True)
        llama._ctx.decode(llama._batch)
        llama.input_ids[n_past : n_past + len(batch)] = batch
        llama.n_tokens = n_past + len(batch)
        return n_past

    def _truncate(self, n_tokens: int) -> None:
        """Forget the cache after ``n_tokens`` tokens, in llama.cpp's KV cache and in llama-cpp-python's books."""
        llama = self.llama
        if n_tokens < llama.n_tokens:
            llama._ctx.kv_cache_seq_rm(-1, n_tokens, -1)
            llama.n_tokens = n_tokens


class _Verifier:
    """``BatchVerifier`` on a loaded model and one generation's sampler chain."""

    def __init__(self, local: LocalModel, sampler: Any) -> None:
        self.local = local
        self.sampler = sampler
        self.n_past = 0

    def decode(self, tokens: list[int]) -> None:
        self.n_past = self.local._decode_rows(tokens)

    def pick(self, row: int) -> int:
        return int(self.sampler.sample(self.local.llama._ctx, row))

    def keep(self, rows: int) -> None:
        self.local._truncate(self.n_past + rows)


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
    llama_cpp = _import_llama_cpp()
    from llama_cpp import Llama

    kv_type = {"f16": llama_cpp.GGML_TYPE_F16, "q8_0": llama_cpp.GGML_TYPE_Q8_0}[settings.kv_cache]

    try:
        llama = Llama(
            model_path=str(path),
            n_ctx=settings.n_ctx,
            n_threads=settings.n_threads,
            n_threads_batch=settings.n_threads,
            n_batch=settings.n_batch,
            flash_attn=settings.flash_attn,
            type_k=kv_type,
            type_v=kv_type,
            verbose=False,
        )
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelLoadError(
            f"llama.cpp could not load {path}: {exc}. The file may be damaged (re-run `slmkit models pull "
            f"{settings.model}` for a catalogue model) or need a newer llama-cpp-python."
        ) from exc
    name = settings.model if settings.model in CATALOGUE else Path(settings.model).stem
    return LocalModel(llama, name, path)
