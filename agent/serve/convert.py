"""Between the OpenAI wire format and the assistant: request -> (question, history), answer -> response parts.

    messages[:-1] -> history (system / developer -> SystemMessage, user -> HumanMessage, assistant -> AIMessage)
    messages[-1]  -> the question (must be a user message with text)
    Answer        -> sources (its citations), the ``slmkit`` extras (route, guard report, timings, abstained)

Anything the assistant cannot honour raises :class:`RequestError`, which the server turns into a 400 in OpenAI's
error shape; the message says what to change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from slmkit.agent.serve.schema import ChatCompletionRequest, ChatMessage, Source, Usage
from slmkit.core.errors import SlmkitError

if TYPE_CHECKING:
    from slmkit.agent.serve.usage import UsageCounter

__all__ = [
    "RequestError",
    "answer_extras",
    "finish_reason_of",
    "generation_overrides",
    "question_and_history",
    "sources_of",
    "usage_of",
]


class RequestError(SlmkitError):
    """A request the server refuses (HTTP 400 unless ``status`` says otherwise)."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.status = status


def _text(message: ChatMessage, index: int) -> str:
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    texts = []
    for part in message.content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise RequestError(
                f"messages[{index}] has a content part of type {part.get('type')!r}; only text parts "
                '({"type": "text", "text": ...}) are supported.',
                param=f"messages[{index}].content",
            )
        texts.append(part["text"])
    return "".join(texts)


def _check_supported(request: ChatCompletionRequest) -> None:
    if request.n != 1:
        raise RequestError("Only n=1 is supported: the assistant gives one answer per request.", param="n")
    if request.tools:
        raise RequestError(
            "tools are not supported here: the assistant answers from its knowledge base. Send the question alone.",
            param="tools",
        )
    if request.response_format and request.response_format.get("type") not in (None, "text"):
        raise RequestError("Only response_format {'type': 'text'} is supported.", param="response_format")


def question_and_history(request: ChatCompletionRequest) -> tuple[str, list[BaseMessage]]:
    """The last message is the question, the ones before it the conversation so far."""
    _check_supported(request)
    *earlier, last = request.messages
    last_index = len(request.messages) - 1
    if last.role != "user":
        raise RequestError(
            f"The last message must come from the user (it is {last.role!r}): it is the question to answer.",
            param=f"messages[{last_index}].role",
        )
    question = _text(last, last_index).strip()
    if not question:
        raise RequestError("The last user message has no text: send a question.", param=f"messages[{last_index}]")
    history: list[BaseMessage] = []
    for index, message in enumerate(earlier):
        text = _text(message, index)
        if message.role in ("system", "developer"):
            history.append(SystemMessage(text))
        elif message.role == "user":
            history.append(HumanMessage(text))
        elif message.role == "assistant":
            history.append(AIMessage(text))
        else:
            raise RequestError(
                f"messages[{index}] has role {message.role!r}; tool and function messages are not supported.",
                param=f"messages[{index}].role",
            )
    return question, history


def generation_overrides(request: ChatCompletionRequest) -> dict[str, Any]:
    """Sampling settings the request sets, as chat-model keyword arguments (the server's settings fill the rest)."""
    overrides: dict[str, Any] = {
        "max_tokens": request.max_completion_tokens or request.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "seed": request.seed,
        "stop": [request.stop] if isinstance(request.stop, str) else request.stop,
    }
    return {k: v for k, v in overrides.items() if v is not None}


def sources_of(answer: Any) -> list[Source]:
    """The passages the answer cites, one per ``[n]`` marker."""
    return [
        Source(marker=c.marker, source=c.source, page=c.page, chunk_id=c.chunk_id, snippet=c.snippet)
        for c in answer.citations
    ]


def answer_extras(answer: Any) -> dict[str, Any]:
    """What an OpenAI response has no field for: which route answered and why, the guard report, timings."""
    routing = answer.routing
    report = answer.guard_report
    return {
        "abstained": bool(answer.abstained),
        "query": getattr(answer, "query", None),
        "route": routing.route if routing is not None else None,
        "routing": routing.model_dump(mode="json") if routing is not None else None,
        "guard_report": report.model_dump(mode="json") if report is not None else None,
        "timings": dict(answer.timings),
    }


def usage_of(counter: UsageCounter) -> Usage:
    """Token counts over every model call the answer took (query rewriting, answer, escalation)."""
    prompt, completion = counter.prompt_tokens, counter.completion_tokens
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def finish_reason_of(counter: UsageCounter) -> Literal["stop", "length"]:
    """``length`` when the answer stopped at ``max_tokens``, as OpenAI reports it."""
    return "length" if counter.finish_reason == "length" else "stop"
