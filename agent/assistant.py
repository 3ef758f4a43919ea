"""``Assistant``: document Q&A over a knowledge base, on the local SLM, routed and guarded, with citations.

One question:

    question -> input guards (PII found and reported; a policy may redact or block)
             -> follow-up? (chat) -> standalone query (the model rewrites it; checked, else previous question + it)
             -> retriever (hybrid BM25 + dense); nothing above the relevance threshold -> "the documents do not
                cover this" (abstained), no model call
             -> a short excerpt of each passage -> prompt: instructions + numbered sources + question (a
                statement is asked as "Is it true that ...?", ``claims``)
             -> model (a RoutedChatModel: the local SLM, or a remote route the policy picks) -> tokens, streamed
             -> citations decided from the text (``citations.attribute``), invalid markers removed
             -> output guards (grounding of each sentence in the excerpts; PII restored) -> Answer
             -> with a cascade (``RemoteModelConfig.escalate_below``): an unsure answer is asked again of the
                remote model, with its own passages and prompt (``slmkit.agent.cascade``)

``Answer`` carries the text, the cited passages (source, page, chunk id), the routing decision, the guard report
and timings. Construction is cheap: the knowledge base, the embedder and the model load on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import ensure_config, get_callback_manager_for_config, patch_config
from pydantic import Field, field_validator

from slmkit.agent.answer import Answer, AnswerEvent, Citation, TokenEvent
from slmkit.agent.cascade import REMOTE_ROUTE, escalated, escalation_reason, kept_local
from slmkit.agent.catalogue import DEFAULT_MODEL, REMOTE_PROFILE, profile_for
from slmkit.agent.citations import SentenceCap, attribute, strip_markers
from slmkit.agent.claims import as_question
from slmkit.agent.decline import DeclineRule, answer_signals, passage_signals, says_not_found
from slmkit.agent.memory import ConversationMemory, check_rewrite, fallback_query, looks_like_follow_up
from slmkit.agent.profiles import PROFILE_FIELDS, TINY_INSTRUCTIONS, ExcerptRanker
from slmkit.agent.prompts import (
    answer_messages,
    excerpt,
    one_per_source,
    passage_text,
    rewrite_messages,
)
from slmkit.core.config import SlmkitConfig
from slmkit.core.errors import KnowledgeBaseError, MissingDependencyError
from slmkit.core.tokens import estimate_tokens
from slmkit.guards.base import Guard, GuardCall
from slmkit.guards.text import words
from slmkit.routing.decision import METADATA_KEY, RoutingDecision

if TYPE_CHECKING:
    from slmkit.retrieval import HybridRetriever, KnowledgeBase

__all__ = ["Assistant", "AssistantConfig", "AssistantInput", "RemoteModelConfig"]

AssistantInput = str | Mapping[str, Any]
"""A question, or ``{"question": ..., "history": [messages]}``."""


def _personal_data() -> list[str]:
    from slmkit.guards.pii import PERSONAL_DATA  # imported when a remote route is configured, not at start-up

    return list(PERSONAL_DATA)


class RemoteModelConfig(SlmkitConfig):
    """An OpenAI-compatible endpoint the router may send questions to (a larger LLM)."""

    base_url: str
    """e.g. ``http://127.0.0.1:8080/v1`` (llama.cpp's server, vLLM, Ollama) or ``https://api.openai.com/v1``."""
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key (servers that need none get a placeholder)."""
    input_usd_per_1k: float = Field(default=0.0, ge=0.0)
    output_usd_per_1k: float = Field(default=0.0, ge=0.0)
    context_window: int = Field(default=32_768, ge=64)
    timeout_s: float = Field(default=60.0, gt=0)
    long_prompt_tokens: int | None = Field(default=1500, ge=1)
    """Prompts at least this long (estimated) go to the remote route; None: never for length."""
    private_entities: list[str] = Field(default_factory=_personal_data)
    """PII types that keep a request (question or retrieved passages) on the local route; by default
    ``slmkit.guards.pii.PERSONAL_DATA``, the list the router's own privacy rule uses. Organisations and dates, which
    every company document mentions, are not among them."""
    escalate_below: float | Literal["auto"] | None = None
    """Cascade: the local SLM answers first, and an answer whose ``answer_score`` (its profile's decline rule;
    token ``min_prob`` for a model without one) is below this is asked again of the remote model, with that
    model's profile (``slmkit.agent.cascade``; answers then arrive whole, not streamed). ``"auto"``: the
    operating point measured for the local model's profile (``ModelProfile.escalate_below``); None: no cascade."""

    @field_validator("escalate_below")
    @classmethod
    def _in_unit_range(cls, value: float | str | None) -> float | str | None:
        if isinstance(value, float) and not 0.0 <= value <= 1.0:
            raise ValueError(f"escalate_below must be between 0 and 1 (or 'auto'), not {value}")
        return value


class AssistantConfig(SlmkitConfig):
    """Settings of an :class:`Assistant`. The fields a model profile covers (``PROFILE_FIELDS``: passages, prompt,
    answer length, when to decline) default to the profile of ``model`` (see ``slmkit.agent.profiles``); the
    values below are those of the 135M default model and of ``.gguf`` paths, and any field you set wins."""

    model: str = DEFAULT_MODEL
    """Catalogue id or ``.gguf`` path of the local SLM (used when no ``model`` is passed to the assistant)."""
    k: int = Field(default=3, ge=1)
    """Passages shown to the model: a few keep a small model on track and the first token quick."""
    group_by_source: bool = True
    """Show one passage per source (file and page), made of all its retrieved chunks: right for short documents
    (an abstract, a policy page); for long ones (a whole article per file) it hides all but one place of it."""
    min_relevance: float | None = Field(default=0.3, ge=-1.0, le=1.0)
    """Cosine similarity (all-MiniLM-L6-v2) the best passage must reach, else nothing is relevant and the
    assistant says so instead of answering; an absolute threshold, so "the best of bad matches" never counts."""
    rerank_top_n: int | None = Field(default=None, ge=1)
    """Rerank this many retrieved candidates with the packaged cross-encoder before choosing the passages
    (``HybridRetriever.rerank_top_n``); None: no reranking."""
    passage_chars: int = Field(default=400, ge=40)
    """Characters of each passage in the prompt (its sentences most relevant to the question, see
    ``excerpt_ranker``)."""
    excerpt_ranker: ExcerptRanker = "overlap"
    """How those sentences are chosen: ``"overlap"`` (content words shared with the question) or
    ``"cross-encoder"`` (the packaged MS MARCO cross-encoder's relevance; costs ~10 ms per sentence)."""
    max_tokens: int = Field(default=80, ge=1)
    """Answer tokens at most (two sentences fit; what a tiny model writes after them is rarely grounded)."""
    max_sentences: int | None = Field(default=2, ge=1)
    """Sentences of the answer kept; the rest is neither shown nor checked. None: no limit."""
    temperature: float = Field(default=0.0, ge=0.0)
    instructions: str = TINY_INSTRUCTIONS
    """The system prompt ahead of the numbered sources."""
    refusal: str = "The documents do not say."
    """What the instructions tell the model to say when the sources do not answer; seen in an answer, it marks
    the answer as abstained."""
    decline: DeclineRule | None = None
    """When to decline although the model answered (its answer is unlikely to be in the documents), from the
    retrieval, reranker, support and token-probability signals in ``Answer.signals``; None: only when nothing
    relevant is retrieved or the model itself says the documents do not say."""
    abstain_message: str = "I found nothing about this in the documents, so I cannot answer it from them."
    """The answer when nothing relevant was retrieved (no model call)."""
    decline_message: str = (
        "The documents do not seem to answer this (searched for: {query!r}). The closest passages are cited below."
    )
    """The answer when retrieved passages do not hold the answer; ``{query}`` is what was searched."""
    no_answer_message: str = (
        "The model gave no answer in words (only source numbers or nothing). Ask again in other words, or use a "
        "larger model."
    )
    """The answer when the model wrote no words at all (some small models reply with "[1] [2]" only): an empty
    answer would look like a crash to whoever reads it."""
    history_turns: int = Field(default=1, ge=0)
    """Earlier turns shown to the model with the question (a tiny model loses its way in long histories)."""
    memory_turns: int = Field(default=8, ge=1)
    """Turns ``chat`` remembers."""
    rewrite_followups: bool = True
    """Rewrite follow-up questions into standalone queries before retrieval."""
    rewrite_max_tokens: int = Field(default=40, ge=4)
    claims_as_questions: bool = True
    """A statement ("Vitamin D prevents fractures.") is put to the model as "Is it true that ...?": handed the bare
    statement, a tiny model rarely says whether the sources support it (see ``slmkit.agent.claims``)."""
    min_citation_support: float = Field(default=0.5, ge=0.0, le=1.0)
    """Share of a sentence's words a passage must contain for the sentence to cite it."""
    remote: RemoteModelConfig | None = None
    """A remote route for the default router; None: the local SLM answers everything."""

    def with_profile(self) -> AssistantConfig:
        """These settings, with the model's profile in every profile field the caller did not set."""
        profile = profile_for(self.model)
        if profile is None:
            return self
        unset = [name for name in PROFILE_FIELDS if name not in self.model_fields_set]
        return self.model_copy(update={name: getattr(profile, name) for name in unset})


class Assistant(Runnable[AssistantInput, Answer | TokenEvent | AnswerEvent]):
    """Questions answered from your documents, with citations, by the local SLM (routed and guarded).

    Example:
        .. code-block:: python

            from slmkit.agent import Assistant

            assistant = Assistant.from_defaults()                 # the "default" knowledge base, SmolLM2-135M
            answer = assistant.ask("How long is the GridBox 3 warranty?")
            answer.text, [(c.marker, c.source, c.page) for c in answer.citations], answer.routing.reason
            for event in assistant.stream("What does error E17 mean?"):
                print(event.text if event.type == "token" else "", end="")
            assistant.chat("How many vacation days do I get?"); assistant.chat("Do they carry over?")

    As a LangChain Runnable it is typed ``Runnable[str | dict, Answer | TokenEvent | AnswerEvent]``: ``invoke``
    and ``batch`` return an :class:`Answer` (their signatures say so), ``stream`` yields ``TokenEvent``\\ s then one
    ``AnswerEvent``, and inside a chain (``assistant | next_step``) only the final ``Answer`` is passed on, streamed
    or not. The union keeps mypy strict clean without ``type: ignore`` on ``stream``, which yields events rather
    than pieces of an Answer. Input: a question, or ``{"question": ..., "history": [messages]}``.

    Args:
        knowledge_base: where passages come from.
        model: any LangChain chat model; None: a ``RoutedChatModel`` over ``ChatLocalSLM(config.model)`` (plus
            ``config.remote`` if set). Pass your own ``RoutedChatModel`` for a custom policy; answers carry its
            ``RoutingDecision``.
        guards: input and output guards, applied in order; None: ``PIIGuard(action="keep", output_action="keep")``
            (PII in the question and in the answer is found and reported, ``guard_report.findings["input"]`` and
            ``["output"]``; privacy toward remote routes is the router's ``KeepLocalIfPII``) and
            ``GroundingGuard()`` (each sentence scored against the excerpts; the report is in the answer);
            ``[]``: no guards.
        config: retrieval, prompt and generation settings.
    """

    def __init__(
        self,
        knowledge_base: KnowledgeBase,
        model: BaseChatModel | None = None,
        guards: Sequence[Guard] | None = None,
        config: AssistantConfig | None = None,
    ) -> None:
        self.knowledge_base = knowledge_base
        self.config = _profiled(config or AssistantConfig(), model)
        self.model = model if model is not None else default_router(self.config)
        self.guards: list[Guard] = list(guards) if guards is not None else default_guards()
        self.memory = ConversationMemory(self.config.memory_turns)
        self._retriever: HybridRetriever | None = None
        # The cascade (config.remote.escalate_below): the assistant that answers escalated questions, and the
        # answer_score below which a local answer goes to it; None, None without a cascade.
        self.remote_assistant, self.escalate_below = _escalation(self, model)

    @classmethod
    def from_defaults(
        cls,
        kb_name: str = "default",
        kb_path: str | os.PathLike[str] | Path | None = None,
        model: str | None = None,
        *,
        config: AssistantConfig | None = None,
    ) -> Assistant:
        """An assistant over the knowledge base ``kb_name`` (in ``kb_path``, else the default folder) on the
        catalogue model ``model`` (default SmolLM2-135M)."""
        from slmkit.retrieval import KnowledgeBase

        config = config or AssistantConfig()
        if model is not None:
            config = config.model_copy(update={"model": model})
        return cls(KnowledgeBase(name=kb_name, path=kb_path), config=config)

    def __repr__(self) -> str:
        return f"Assistant(knowledge_base={self.knowledge_base!r}, model={type(self.model).__name__})"

    @property
    def InputType(self) -> Any:  # noqa: N802 - LangChain's name
        return AssistantInput

    @property
    def OutputType(self) -> Any:  # noqa: N802 - LangChain's name
        return Answer

    @property
    def retriever(self) -> HybridRetriever:
        if self._retriever is None:
            options: dict[str, Any] = {"k": self.config.k, "min_top_relevance": self.config.min_relevance}
            if self.config.rerank_top_n is not None:
                options["rerank_top_n"] = self.config.rerank_top_n
            self._retriever = self.knowledge_base.as_retriever(**options)
        return self._retriever

    def local_models(self) -> list[Any]:
        """The in-process chat models this assistant may call (its model, or the routes of a routed one) that can
        be loaded ahead of use (``load()``, as ``ChatLocalSLM`` can)."""
        routes = getattr(getattr(self.model, "policy", None), "routes", {})
        models = [self.model, *(route.model for route in routes.values())]
        return [m for m in models if callable(getattr(m, "load", None))]

    def preload(self) -> threading.Thread:
        """Start loading the local models, and the tokenizer the router estimates prompts with, in a background
        thread and return it.

        A first question's imports and retrieval then overlap the model load (llama.cpp reads the weights without
        holding the GIL) instead of preceding it. A load that fails here fails again, with its message, when the
        model is first used.
        """

        def load() -> None:
            for model in self.local_models():
                with contextlib.suppress(Exception):
                    model.load()
            with contextlib.suppress(Exception):
                estimate_tokens("")  # tiktoken's BPE file: 0.4 s of the routing decision otherwise

        thread = threading.Thread(target=load, name="slmkit-preload", daemon=True)
        thread.start()
        return thread

    # -- the public calls ------------------------------------------------------------------------------------
    def ask(self, question: str, *, history: Sequence[BaseMessage] | None = None) -> Answer:
        """The whole answer at once."""
        return self.invoke(question, history=history)

    def invoke(
        self,
        input: AssistantInput,
        config: RunnableConfig | None = None,
        *,
        history: Sequence[BaseMessage] | None = None,
        **kwargs: Any,
    ) -> Answer:
        answer: Answer | None = None
        for event in self.stream(input, config, history=history):
            if isinstance(event, AnswerEvent):
                answer = event.answer
        assert answer is not None
        return answer

    def stream(
        self,
        input: AssistantInput,
        config: RunnableConfig | None = None,
        *,
        history: Sequence[BaseMessage] | None = None,
        **kwargs: Any,
    ) -> Iterator[TokenEvent | AnswerEvent]:
        """Tokens as the model writes them, then one ``AnswerEvent`` with the checked answer (with a cascade, the
        tokens come once it is decided which model's answer stands)."""
        question, past = _parse_input(input, history)
        config = ensure_config(config)
        run = get_callback_manager_for_config(config).on_chain_start(
            None, {"question": question}, name=config.get("run_name") or "Assistant"
        )
        child = patch_config(config, callbacks=run.get_child())
        try:
            answering = self._answer if self.remote_assistant is None else self._cascaded
            for event in answering(question, past, child):
                if isinstance(event, AnswerEvent):
                    run.on_chain_end(event.answer.model_dump(mode="json"))
                yield event
        except BaseException as exc:
            run.on_chain_error(exc)
            raise

    async def astream(
        self,
        input: AssistantInput,
        config: RunnableConfig | None = None,
        *,
        history: Sequence[BaseMessage] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[TokenEvent | AnswerEvent]:
        """``stream`` on a worker thread (llama.cpp blocks), events handed to the event loop as they come."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()
        end = object()

        def produce() -> None:
            try:
                for event in self.stream(input, config, history=history):
                    if stop.is_set():
                        break
                    loop.call_soon_threadsafe(queue.put_nowait, event)
            except BaseException as exc:  # handed to the consumer, raised there
                loop.call_soon_threadsafe(queue.put_nowait, _Failure(exc))
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, end)

        threading.Thread(target=produce, name="slmkit-assistant", daemon=True).start()
        try:
            while (item := await queue.get()) is not end:
                if isinstance(item, _Failure):
                    raise item.error
                yield item
        finally:
            stop.set()

    def transform(
        self, input: Iterator[AssistantInput], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Answer]:
        """In a streaming chain, pass only the final ``Answer`` on (the next step expects an Answer)."""
        yield self.invoke(_last(input), config)

    async def atransform(
        self, input: AsyncIterator[AssistantInput], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Answer]:
        value: Any = None
        async for chunk in input:
            value = _join(value, chunk)
        yield await self.ainvoke(value, config)

    async def ainvoke(
        self,
        input: AssistantInput,
        config: RunnableConfig | None = None,
        *,
        history: Sequence[BaseMessage] | None = None,
        **kwargs: Any,
    ) -> Answer:
        answer: Answer | None = None
        async for event in self.astream(input, config, history=history):
            if isinstance(event, AnswerEvent):
                answer = event.answer
        assert answer is not None
        return answer

    def chat(self, question: str) -> Answer:
        """One turn of a conversation: follow-ups are understood, the turn is remembered (``reset`` forgets)."""
        answer: Answer | None = None
        for event in self.chat_stream(question):
            if isinstance(event, AnswerEvent):
                answer = event.answer
        assert answer is not None
        return answer

    def chat_stream(self, question: str) -> Iterator[TokenEvent | AnswerEvent]:
        """``chat``, streamed."""
        for event in self.stream(question, history=self.memory.messages()):
            if isinstance(event, AnswerEvent):
                self.memory.add(question, strip_markers(event.answer.text))
            yield event

    def reset(self) -> None:
        """Forget the conversation."""
        self.memory.clear()

    # -- one answer ------------------------------------------------------------------------------------------
    def _answer(
        self, question: str, history: Sequence[BaseMessage], config: RunnableConfig
    ) -> Iterator[TokenEvent | AnswerEvent]:
        cfg = self.config
        started = time.perf_counter()
        timings: dict[str, float] = {}
        call = GuardCall(question=question)

        mark = time.perf_counter()
        asked = question
        watchers = [g for g in self.guards if _reports_only(g)]
        for guard in self.guards:
            if guard not in watchers:
                asked = guard.check_input(asked, call)
        guards_ms = _ms(mark)

        query = asked
        if history and cfg.rewrite_followups and looks_like_follow_up(asked):
            mark = time.perf_counter()
            query = self._standalone(asked, history, config)
            timings["rewrite_ms"] = _ms(mark)

        if not self.knowledge_base.exists():
            kb = self.knowledge_base
            raise KnowledgeBaseError(
                f"There is no knowledge base {kb.name!r} in {kb.path}. Add documents first: "
                f"`slmkit ingest PATH --kb {kb.name}` (or KnowledgeBase.ingest)."
            )
        mark = time.perf_counter()
        if cfg.group_by_source:
            passages = one_per_source(self.retriever.invoke(query, config=config, k=cfg.k * 3), cfg.k)
        else:
            passages = self.retriever.invoke(query, config=config, k=cfg.k)
        timings["retrieve_ms"] = _ms(mark)
        # Started once the first token is out (or the answer is known): loading Presidio and spaCy holds the
        # interpreter, and a cold start's retrieval, routing and prompt would wait for it (a second on 2 cores).
        background = _Background(lambda: [g.check_input(question, call) for g in watchers]) if watchers else None
        report = call.report if self.guards else None

        if not passages:
            timings["first_token_ms"] = _ms(started)
            yield TokenEvent(text=cfg.abstain_message)
            timings["guards_ms"] = guards_ms + (background.wait() if background else 0.0)
            timings["total_ms"] = _ms(started)
            answer = Answer(text=cfg.abstain_message, guard_report=report, timings=timings, abstained=True, query=query)
            yield AnswerEvent(answer=answer)
            return

        scorer = _cross_encoder_scores if cfg.excerpt_ranker == "cross-encoder" else None
        excerpts = [excerpt(p.page_content, query, cfg.passage_chars, scorer) for p in passages]
        signals = passage_signals(query, excerpts, [float(p.metadata.get("relevance") or 0.0) for p in passages])
        if reranked := [float(p.metadata["rerank_score"]) for p in passages if "rerank_score" in p.metadata]:
            signals["top_rerank"] = max(reranked)
        recent = history[-2 * cfg.history_turns :] if cfg.history_turns else []
        prompt = as_question(asked) if cfg.claims_as_questions else asked
        messages = answer_messages(prompt, excerpts, instructions=cfg.instructions, history=recent)
        mark = time.perf_counter()
        cap = SentenceCap(cfg.max_sentences)
        last: AIMessageChunk | None = None
        for chunk in self.model.stream(messages, config=config):
            # After the cap the stream is still drained: a routed model sends its decision with the last chunk.
            visible = cap.feed(chunk.content) if isinstance(chunk.content, str) else ""
            if visible:
                timings.setdefault("first_token_ms", _ms(started))
                yield TokenEvent(text=visible)
                if background is not None:
                    background.start()
            if isinstance(chunk, AIMessageChunk):
                last = chunk if last is None else last + chunk
        if tail := cap.flush():
            timings.setdefault("first_token_ms", _ms(started))
            yield TokenEvent(text=tail)
        timings["generate_ms"] = _ms(mark)
        timings.setdefault("first_token_ms", _ms(started))

        attribution = attribute(cap.text, excerpts, question=query, min_support=cfg.min_citation_support)
        refused = says_not_found(cap.text, cfg.refusal)
        confidence = (last.response_metadata.get("confidence") if last is not None else None) or {}
        signals |= answer_signals(strip_markers(cap.text), excerpts, confidence, refused=refused)
        abstained = refused or (cfg.decline is not None and cfg.decline.declines(signals))
        if cfg.decline is not None:
            signals["answer_score"] = round(cfg.decline.score(signals), 4)
        waited = background.wait() if background else 0.0
        mark = time.perf_counter()
        call.context = excerpts
        text = attribution.text
        if abstained:
            # The closest passages are offered instead: the reader may find what the model could not.
            text = cfg.decline_message.format(query=query)
            cited = list(range(min(2, len(passages))))
        elif not words(text):
            text = cfg.no_answer_message  # nothing for the output guards to check
            cited = []
        else:
            for guard in self.guards:
                text = guard.check_output(text, call)
            cited = [i for i in attribution.cited if f"[{i + 1}]" in text]
        timings["guards_ms"] = guards_ms + waited + _ms(mark)
        timings["total_ms"] = _ms(started)
        yield AnswerEvent(
            answer=Answer(
                text=text,
                citations=[_citation(i + 1, passages[i], excerpts[i]) for i in cited],
                routing=_routing(last),
                guard_report=report,
                timings=timings,
                abstained=abstained,
                query=query,
                signals={name: round(value, 4) for name, value in signals.items()},
            )
        )

    def _cascaded(
        self, question: str, history: Sequence[BaseMessage], config: RunnableConfig
    ) -> Iterator[TokenEvent | AnswerEvent]:
        """The local answer, or the remote assistant's when the local one is unsure (``slmkit.agent.cascade``)."""
        remote, threshold = self.remote_assistant, self.escalate_below
        assert remote is not None
        assert threshold is not None
        events = list(self._answer(question, history, config))
        local = events[-1]
        assert isinstance(local, AnswerEvent)
        reason = escalation_reason(local.answer, threshold)
        if reason is None:
            yield from events
            return
        try:
            second = list(remote._answer(question, history, config))
        except Exception as exc:  # an unreachable or failing endpoint: the local answer is still an answer
            yield from events[:-1]
            endpoint = self.config.remote.base_url if self.config.remote else "the remote endpoint"
            yield AnswerEvent(answer=kept_local(local.answer, exc, endpoint))
            return
        final = second[-1]
        assert isinstance(final, AnswerEvent)
        yield from second[:-1]
        yield AnswerEvent(answer=escalated(local.answer, final.answer, reason))

    def _standalone(self, question: str, history: Sequence[BaseMessage], config: RunnableConfig) -> str:
        """The follow-up as a question of its own (checked), else the previous question and the follow-up."""
        recent = list(history[-2:])
        reply = self.model.invoke(
            rewrite_messages(question, recent), config=config, max_tokens=self.config.rewrite_max_tokens
        )
        text = reply.content if isinstance(reply.content, str) else ""
        return check_rewrite(text, question, recent) or fallback_query(question, history)


# -- defaults ------------------------------------------------------------------------------------------------
def default_guards() -> list[Guard]:
    """PII found in the question and in the answer and reported (kept: the local model may see it, and the
    answer repeats the user's own documents), grounding reported. ``PIIGuard(output_action="redact")`` instead
    hides PII that answers repeat from the documents."""
    from slmkit.guards import GroundingGuard, PIIGuard

    return [PIIGuard(action="keep", output_action="keep"), GroundingGuard()]


def default_router(config: AssistantConfig) -> BaseChatModel:
    """A ``RoutedChatModel``: the local SLM alone, or with ``config.remote`` for long prompts (personal data in the
    question or the passages keeps a request local)."""
    from slmkit.agent.chat_local import ChatLocalSLM
    from slmkit.guards import PIIGuard
    from slmkit.routing import KeepLocalIfPII, PreferLargeIfLong, Route, RoutedChatModel, RoutingPolicy

    local = ChatLocalSLM(model=config.model, temperature=config.temperature, max_tokens=config.max_tokens)
    routes = {"local": Route(model=local, local=True, context_window=local.n_ctx)}
    remote = config.remote
    if remote is None:
        return RoutedChatModel(policy=RoutingPolicy(routes=routes))
    routes[REMOTE_ROUTE] = Route(
        model=_openai_compatible(remote, config),
        input_usd_per_1k=remote.input_usd_per_1k,
        output_usd_per_1k=remote.output_usd_per_1k,
        context_window=remote.context_window,
    )
    rules: list[Any] = [KeepLocalIfPII(detector=PIIGuard(entities=remote.private_entities))]
    if remote.long_prompt_tokens is not None:
        rules.append(PreferLargeIfLong(tokens=remote.long_prompt_tokens, route=REMOTE_ROUTE))
    # The cascade (remote.escalate_below) is the assistant's own: the remote model gets its own passages and prompt.
    return RoutedChatModel(policy=RoutingPolicy(routes=routes, rules=rules, default="local"))


def _escalation(assistant: Assistant, model: BaseChatModel | None) -> tuple[Assistant | None, float | None]:
    """The remote assistant and threshold of the cascade, when the assistant builds its own router and
    ``config.remote.escalate_below`` is set (a model passed in brings its own policy)."""
    remote = assistant.config.remote
    if model is not None or remote is None or remote.escalate_below is None:
        return None, None
    threshold = remote.escalate_below
    if threshold == "auto":
        profile = profile_for(assistant.config.model)
        threshold = profile.escalate_below if profile is not None and profile.escalate_below is not None else 0.5
    profile = profile_for(remote.model) or REMOTE_PROFILE
    settings = {name: getattr(profile, name) for name in PROFILE_FIELDS}
    config = assistant.config.model_copy(update=settings | {"remote": None})
    return Assistant(
        assistant.knowledge_base, model=_openai_compatible(remote, config), guards=assistant.guards, config=config
    ), float(threshold)


def _openai_compatible(remote: RemoteModelConfig, config: AssistantConfig) -> BaseChatModel:
    try:
        from langchain_openai import ChatOpenAI
    except ImportError as exc:
        raise MissingDependencyError("langchain-openai", extra="routing", purpose="a remote route") from exc
    from pydantic import SecretStr

    return ChatOpenAI(
        base_url=remote.base_url,
        model=remote.model,
        api_key=SecretStr(os.environ.get(remote.api_key_env) or "not-needed"),
        timeout=remote.timeout_s,
        max_retries=0,
        temperature=config.temperature,
        max_completion_tokens=config.max_tokens,
    )


# -- helpers -------------------------------------------------------------------------------------------------
def _profiled(config: AssistantConfig, model: BaseChatModel | None) -> AssistantConfig:
    """The config with the profile of the model that will answer: ``config.model`` when the assistant builds it,
    else the local model inside the one given (a ``ChatLocalSLM``, or a ``RoutedChatModel`` whose default route is
    one). Any other chat model gets the config as it is: a profile is tuned for one model."""
    if model is None:
        return config.with_profile()
    from slmkit.agent.chat_local import ChatLocalSLM
    from slmkit.routing import RoutedChatModel

    if isinstance(model, RoutedChatModel):
        model = model.policy.routes[model.policy.default_route].model
    if isinstance(model, ChatLocalSLM):
        return config.model_copy(update={"model": model.model}).with_profile()
    return config


def _reports_only(guard: Guard) -> bool:
    """A PII guard that only reports (every action ``keep``) cannot change the question, so it runs beside the
    answer instead of before it: Presidio's first load takes seconds, and the first token need not wait."""
    from slmkit.guards.pii import PIIGuard

    if not isinstance(guard, PIIGuard):
        return False
    cfg = guard.config
    return cfg.action == "keep" and all(a == "keep" for a in cfg.actions.values())


class _Background:
    """A function for a thread, started by ``start`` (or ``wait``); ``wait`` re-raises its error and returns the
    milliseconds spent waiting."""

    def __init__(self, fn: Callable[[], object]) -> None:
        self._error: BaseException | None = None

        def run() -> None:
            try:
                fn()
            except BaseException as exc:
                self._error = exc

        self._thread = threading.Thread(target=run, name="slmkit-guard", daemon=True)

    def start(self) -> None:
        """Start the function (once); ``wait`` starts it too."""
        if self._thread.ident is None:
            self._thread.start()

    def wait(self) -> float:
        self.start()
        mark = time.perf_counter()
        self._thread.join()
        if self._error is not None:
            raise self._error
        return _ms(mark)


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _cross_encoder_scores(query: str, sentences: list[str]) -> Sequence[float]:
    """The packaged cross-encoder's relevance logits (loaded once per process, on first use)."""
    from slmkit.retrieval.rerank import CrossEncoderReranker

    return [float(x) for x in CrossEncoderReranker().score(query, sentences)]


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)


def _parse_input(value: AssistantInput, history: Sequence[BaseMessage] | None) -> tuple[str, list[BaseMessage]]:
    if isinstance(value, str):
        return value, list(history or [])
    if isinstance(value, Mapping) and isinstance(value.get("question"), str):
        return value["question"], list(history if history is not None else value.get("history") or [])
    raise TypeError(
        "An Assistant takes a question (str) or {'question': str, 'history': [messages]}, "
        f"not {type(value).__name__}."
    )


def _join(value: Any, chunk: Any) -> Any:
    if value is None:
        return chunk
    try:
        return value + chunk
    except TypeError:
        return chunk


def _last(chunks: Iterator[Any]) -> Any:
    value: Any = None
    for chunk in chunks:
        value = _join(value, chunk)
    return value


def _routing(message: AIMessageChunk | None) -> RoutingDecision | None:
    if message is None or METADATA_KEY not in message.response_metadata:
        return None
    return RoutingDecision.from_message(message)


def _citation(marker: int, passage: Document, shown: str) -> Citation:
    meta = passage.metadata
    lines = (meta["start_line"], meta["end_line"]) if "start_line" in meta and "end_line" in meta else None
    return Citation(
        marker=marker,
        source=str(meta.get("source", "")),
        page=meta.get("page"),
        chunk_id=str(passage.id or meta.get("chunk_id", "")),
        snippet=shown or passage_text(passage)[:300],
        lines=lines,
        headings=meta.get("headings") or None,
        relevance=meta.get("relevance"),
    )
