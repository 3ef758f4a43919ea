"""``RoutedChatModel``: a LangChain chat model that applies a :class:`RoutingPolicy` and delegates to the chosen route.

One call:

    messages -> RoutingRequest -> policy.plan (constraints, rules, session, cascade, privacy)
      -> try the chain: route, then its fallbacks, on timeout / refused connection / rate limit / server error /
         context overflow (each attempt and failure recorded); non-local routes get pseudonymized messages if planned
      -> cascade: score the first answer's confidence; below the bar, ask the escalation route (if that fails too,
         the first answer stands)
      -> AIMessage from the route, with response_metadata["routing_decision"] (route, signals, reason, estimated and
         actual cost, attempts), recorded in ``stats``

Tools (``bind_tools``) and structured output (``with_structured_output``) pass through: the chosen route binds them
itself, so each route uses its own tool-calling or JSON mechanism. ``stream`` streams from the chosen route (a route
fails over only before its first chunk) and sends the decision with the last chunk.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any, Literal

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.exceptions import (
    ContextOverflowError,
    ModelAPIError,
    ModelConnectionError,
    ModelRateLimitError,
    ModelTimeoutError,
    OutputParserException,
)
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableLambda, RunnableMap, RunnablePassthrough
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field, PrivateAttr

from slmkit.core.errors import RoutesFailedError
from slmkit.core.tokens import estimate_tokens
from slmkit.routing.decision import METADATA_KEY, FailureKind, RouteAttempt, RoutingDecision, Signal
from slmkit.routing.policy import RoutingPlan, RoutingPolicy
from slmkit.routing.privacy import new_vault, pseudonymize, restore
from slmkit.routing.request import RoutingRequest, message_text
from slmkit.routing.stats import RoutingStats

__all__ = ["RoutedChatModel", "classify_failure"]

_SESSIONS_KEPT = 10_000
_ROUTING_KWARGS = ("tools", "tool_choice", "structured_output", "session_id", "ls_structured_output_format")


def classify_failure(exc: BaseException) -> FailureKind | None:
    """The kind of a route failure that a fallback should absorb, or None for errors to raise (bugs, bad input).

    langchain-core's error types first (langchain-openai maps the OpenAI SDK's onto them), then Python's, then the
    class names other SDKs use (httpx ``ConnectError``, ``ReadTimeout``, ...).
    """
    for kinds, kind in (
        ((ModelTimeoutError, TimeoutError), "timeout"),
        ((ModelRateLimitError,), "rate_limit"),
        ((ModelConnectionError, ConnectionError), "connection"),
        ((ModelAPIError,), "server"),
        ((ContextOverflowError,), "context_overflow"),
    ):
        if isinstance(exc, kinds):
            return kind  # type: ignore[return-value]
    names = " ".join(c.__name__ for c in type(exc).__mro__)
    if "Timeout" in names:
        return "timeout"
    if "RateLimit" in names:
        return "rate_limit"
    if "Connect" in names:
        return "connection"
    return None


class RoutedChatModel(BaseChatModel):
    """A chat model that routes each request by a policy and answers with the chosen route's model.

    Example:
        .. code-block:: python

            routed = RoutedChatModel(policy=policy, sticky_sessions=True)
            msg = routed.invoke("Prove that sqrt(2) is irrational.")
            RoutingDecision.from_message(msg).reason      # "Keywords asked for 'llm' (keywords=Prove)"
            routed.as_decider().invoke("hi")              # the decision only, no model call
            routed.stats.report().saved_usd
    """

    policy: RoutingPolicy
    stats: RoutingStats = Field(default_factory=RoutingStats, exclude=True)
    """Totals over every decision (shared by copies made with ``bind``)."""
    sticky_sessions: bool = False
    """Keep a conversation on the route that answered its first turn, unless a constraint or a ``force`` rule
    moves it. A conversation is named by ``session_id=`` (call kwarg) or by its opening messages."""
    temperature: float | None = None
    """Passed to the chosen route when set; None keeps each route's own setting."""
    max_tokens: int | None = None
    stop: list[str] | None = None
    _sessions: OrderedDict[str, str] = PrivateAttr(default_factory=OrderedDict)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    # -- LangChain plumbing ------------------------------------------------------------------------------------
    @property
    def _llm_type(self) -> str:
        return "slmkit-routed"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"routes": sorted(self.policy.routes), "default": self.policy.default_route}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="slmkit",
            ls_model_name=kwargs.get("model", "routed:" + "|".join(self.policy.routes)),
            ls_model_type="chat",
        )
        if self.temperature is not None:
            params["ls_temperature"] = self.temperature
        if self.max_tokens is not None:
            params["ls_max_tokens"] = self.max_tokens
        if stop_list := stop or self.stop:
            params["ls_stop"] = stop_list
        return params

    # -- deciding ----------------------------------------------------------------------------------------------
    def plan(self, messages: Sequence[BaseMessage], *, session_id: str | None = None) -> RoutingPlan:
        """The policy's plan for ``messages``, with this model's stats (budgets) and sessions."""
        return self._plan(RoutingRequest(messages, session_id=session_id))

    def _plan(self, request: RoutingRequest) -> RoutingPlan:
        return self.policy.plan(request, stats=self.stats, session_route=self._session_route(request))

    def decide(self, input: LanguageModelInput, *, session_id: str | None = None) -> RoutingDecision:
        """The decision for ``input`` without calling any model (a cascade's escalation is only planned)."""
        return self.plan(self._convert_input(input).to_messages(), session_id=session_id).decision

    def as_decider(self) -> Runnable[LanguageModelInput, RoutingDecision]:
        """A Runnable that returns only the decision, e.g. to log or test a policy."""
        return RunnableLambda(self.decide, name="RoutingDecider")

    def _session_route(self, request: RoutingRequest) -> str | None:
        if not self.sticky_sessions:
            return None
        with self._lock:
            return self._sessions.get(request.session_id)

    def _remember(self, decision: RoutingDecision) -> None:
        if not self.sticky_sessions or decision.session_id is None:
            return
        with self._lock:
            self._sessions[decision.session_id] = decision.route
            self._sessions.move_to_end(decision.session_id)
            while len(self._sessions) > _SESSIONS_KEPT:
                self._sessions.popitem(last=False)

    # -- generation --------------------------------------------------------------------------------------------
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = RoutingRequest(messages, session_id=kwargs.get("session_id"))
        message = self._answer(request, self._plan(request), stop, kwargs)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _answer(
        self, request: RoutingRequest, plan: RoutingPlan, stop: list[str] | None, kwargs: dict[str, Any]
    ) -> AIMessage:
        call = _Caller(self, request, plan, stop, kwargs)
        message = call.first_success(plan.chain)
        if plan.escalate_to is not None and self.policy.cascade is not None:
            message = call.maybe_escalate(message, plan.decision.route, plan.escalate_to)
        self._finish(plan.decision, request)
        metadata = {**message.response_metadata, METADATA_KEY: plan.decision.model_dump(mode="json")}
        return message.model_copy(update={"response_metadata": metadata})

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        """Stream from the chosen route; the decision arrives with the last chunk.

        A cascade, pseudonymized messages and structured output need the whole answer first (to judge it, restore
        placeholders or parse it), so those come as one chunk.
        """
        request = RoutingRequest(messages, session_id=kwargs.get("session_id"))
        plan = self._plan(request)
        if plan.escalate_to is not None or plan.pii or "structured_output" in kwargs:
            whole = self._answer(request, plan, stop, kwargs)
            yield ChatGenerationChunk(message=_as_chunk(whole))
            return
        for chunk in _Caller(self, request, plan, stop, kwargs).stream(plan.chain):
            if run_manager and isinstance(chunk.content, str):
                run_manager.on_llm_new_token(chunk.content, chunk=ChatGenerationChunk(message=chunk))
            yield ChatGenerationChunk(message=chunk)
        self._finish(plan.decision, request)
        last = AIMessageChunk(content="", response_metadata={METADATA_KEY: plan.decision.model_dump(mode="json")})
        yield ChatGenerationChunk(message=last)

    def _finish(self, decision: RoutingDecision, request: RoutingRequest) -> None:
        decision.actual_cost_usd = sum(a.cost_usd for a in decision.attempts)
        answered = next(a for a in reversed(decision.attempts) if a.ok and a.route == decision.route)
        priciest = max(self.policy.routes.values(), key=lambda r: (r.output_usd_per_1k, r.input_usd_per_1k))
        decision.reference_cost_usd = priciest.cost(request.estimated_tokens, answered.output_tokens)
        self.stats.record(decision)
        self._remember(decision)

    # -- tools and structured output ---------------------------------------------------------------------------
    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: dict[str, Any] | str | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools; the chosen route binds them with its own ``bind_tools`` at call time."""
        formatted = [convert_to_openai_tool(t) for t in tools]
        return super().bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        method: Literal["json_schema", "function_calling", "json_mode"] = "json_schema",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | Any]:
        """Structured output through the chosen route's own ``with_structured_output`` (``method`` passed on)."""
        if kwargs:
            raise ValueError(f"Unexpected arguments for with_structured_output: {sorted(kwargs)}")
        spec = {"schema": schema, "method": method, "strict": strict}
        llm = self.bind(
            structured_output=spec,
            ls_structured_output_format={"kwargs": {"method": method, "strict": strict}, "schema": schema},
        )
        if not include_raw:
            return llm | RunnableLambda(_parsed_or_raise)
        return RunnableMap(raw=llm) | RunnablePassthrough.assign(
            parsed=itemgetter("raw") | RunnableLambda(lambda m: m.additional_kwargs.get("parsed")),
            parsing_error=itemgetter("raw") | RunnableLambda(lambda m: m.additional_kwargs.get("parsing_error")),
        )


def _as_chunk(message: AIMessage) -> AIMessageChunk:
    calls = [
        {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i, "type": "tool_call_chunk"}
        for i, c in enumerate(message.tool_calls)
    ]
    return AIMessageChunk(
        content=message.content,
        tool_call_chunks=calls,
        additional_kwargs=message.additional_kwargs,
        response_metadata=message.response_metadata,
        usage_metadata=message.usage_metadata,
        id=message.id,
    )


def _parsed_or_raise(message: AIMessage) -> Any:
    error = message.additional_kwargs.get("parsing_error")
    if error is not None:
        raise error if isinstance(error, BaseException) else OutputParserException(str(error))
    return message.additional_kwargs.get("parsed")


class _Caller:
    """Calls routes for one request, recording every attempt in the plan's decision."""

    def __init__(
        self,
        owner: RoutedChatModel,
        request: RoutingRequest,
        plan: RoutingPlan,
        stop: list[str] | None,
        kwargs: dict[str, Any],
    ) -> None:
        self.owner, self.request, self.plan = owner, request, plan
        self.kwargs = kwargs
        self.overrides: dict[str, Any] = {
            k: v for k, v in (("temperature", owner.temperature), ("max_tokens", owner.max_tokens)) if v is not None
        }
        if stop or owner.stop:
            self.overrides["stop"] = stop or owner.stop

    def first_success(self, chain: list[str]) -> AIMessage:
        errors: list[str] = []
        for name in chain:
            message = self.call(name)
            if message is not None:
                return message
            errors.append(f"{name}: {self.plan.decision.attempts[-1].error}")
        raise RoutesFailedError(errors)

    def maybe_escalate(self, answer: AIMessage, first: str, then: str) -> AIMessage:
        cascade = self.owner.policy.cascade
        assert cascade is not None
        decision = self.plan.decision
        model = self.owner.policy.routes[first].model
        confidence = cascade.confidence.score(self.request, answer, model)
        escalate = cascade.should_escalate(confidence)
        decision.signals.append(
            Signal(
                name="confidence",
                value=None if confidence is None else round(confidence, 4),
                fired=escalate,
                route=then,
                detail=f"{cascade.confidence.name} < {cascade.escalate_below}",
            )
        )
        if not escalate:
            decision.reason += f"; {first!r} was confident enough ({_fmt(confidence)})"
            return answer
        escalated = self.call(then)
        if escalated is None:
            decision.reason += f"; escalation to {then!r} failed, keeping {first!r}'s answer"
            return answer
        decision.escalated = True
        decision.route = then
        decision.reason += f"; escalated to {then!r} (confidence {_fmt(confidence)} < {cascade.escalate_below})"
        return escalated

    def call(self, name: str) -> AIMessage | None:
        """One attempt; None if it failed in a way a fallback absorbs (recorded), else the error propagates."""
        route = self.owner.policy.routes[name]
        vault = new_vault() if self.plan.pii and not route.local else None
        messages = self.request.messages if vault is None else pseudonymize(self.request.messages, self.plan.pii, vault)
        started = time.perf_counter()
        try:
            message = self._invoke(route.model, messages)
        except Exception as exc:
            self._failed(name, exc, started)
            return None
        if vault is not None:
            message = restore(message, vault)
            self.plan.decision.pseudonymized = True
        self._succeeded(name, message, started)
        return message

    def stream(self, chain: list[str]) -> Iterator[AIMessageChunk]:
        """Stream from the first route that starts answering; a route may fail over only before its first chunk."""
        errors: list[str] = []
        for name in chain:
            model = self.owner.policy.routes[name].model
            started = time.perf_counter()
            answer: AIMessageChunk | None = None
            try:
                for chunk in self._bound(model).stream(self.request.messages, **self._call_kwargs()):
                    if not isinstance(chunk, AIMessageChunk):  # a model that cannot stream yields one message
                        chunk = _as_chunk(chunk if isinstance(chunk, AIMessage) else AIMessage(chunk.content))
                    answer = chunk if answer is None else answer + chunk
                    yield chunk
            except Exception as exc:
                if answer is not None:
                    raise  # the caller has seen part of this answer: another route cannot take over
                self._failed(name, exc, started)
                errors.append(f"{name}: {self.plan.decision.attempts[-1].error}")
                continue
            self._succeeded(name, answer or AIMessageChunk(content=""), started)
            return
        raise RoutesFailedError(errors)

    def _failed(self, name: str, exc: Exception, started: float) -> None:
        kind = classify_failure(exc)
        if kind is None:
            raise exc
        self.plan.decision.attempts.append(
            RouteAttempt(
                route=name,
                ok=False,
                failure=kind,
                error=f"{type(exc).__name__}: {exc}"[:500],
                latency_ms=(time.perf_counter() - started) * 1000,
            )
        )

    def _succeeded(self, name: str, message: BaseMessage, started: float) -> None:
        usage = getattr(message, "usage_metadata", None)
        if usage:
            n_in, n_out, exact = usage["input_tokens"], usage["output_tokens"], True
        else:
            n_in, n_out, exact = self.request.estimated_tokens, estimate_tokens(message_text(message)), False
        self.plan.decision.attempts.append(
            RouteAttempt(
                route=name,
                ok=True,
                input_tokens=n_in,
                output_tokens=n_out,
                exact_tokens=exact,
                cost_usd=self.owner.policy.routes[name].cost(n_in, n_out),
                latency_ms=(time.perf_counter() - started) * 1000,
            )
        )
        self.plan.decision.route = name

    def _call_kwargs(self) -> dict[str, Any]:
        return {**self.overrides, **{k: v for k, v in self.kwargs.items() if k not in _ROUTING_KWARGS}}

    def _bound(self, model: BaseChatModel) -> Runnable[LanguageModelInput, BaseMessage]:
        if self.kwargs.get("tools"):
            return model.bind_tools(self.kwargs["tools"], tool_choice=self.kwargs.get("tool_choice"))
        return model

    def _invoke(self, model: BaseChatModel, messages: list[BaseMessage]) -> AIMessage:
        spec = self.kwargs.get("structured_output")
        if spec is not None:
            runnable = model.with_structured_output(
                spec["schema"], method=spec["method"], strict=spec["strict"], include_raw=True
            )
            out: Any = runnable.invoke(messages)
            raw: AIMessage = out["raw"]
            extra = {"parsed": out.get("parsed"), "parsing_error": out.get("parsing_error")}
            return raw.model_copy(update={"additional_kwargs": {**raw.additional_kwargs, **extra}})
        result = self._bound(model).invoke(messages, **self._call_kwargs())
        if not isinstance(result, AIMessage):
            raise TypeError(f"The route returned {type(result).__name__}, not an AIMessage.")
        return result


def _fmt(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.3f}"
