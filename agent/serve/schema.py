"""The OpenAI chat-completions wire format: what ``slmkit serve`` accepts and returns, as pydantic models.

Requests accept (and ignore) fields the assistant has no use for, such as ``user`` or ``logit_bias``, because
OpenAI clients and UIs send them; fields that would change the answer in a way the assistant cannot honour
(``n`` > 1, ``tools``, non-text content) are rejected with a 400 by the server, not silently dropped.
Responses are OpenAI's shapes plus two top-level extras: ``sources`` (the passages behind the ``[n]`` markers in the
text) and ``slmkit`` (route, guard report, timings, abstention).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatMessage",
    "Choice",
    "ChunkChoice",
    "Delta",
    "ErrorBody",
    "ErrorDetail",
    "ModelCard",
    "ModelList",
    "ResponseMessage",
    "Source",
    "StreamOptions",
    "Usage",
]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class ChatMessage(_Lenient):
    """One message of the conversation; content is a string or a list of ``{"type": "text", "text": ...}`` parts."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class StreamOptions(_Lenient):
    include_usage: bool = False
    """Send one more chunk before ``[DONE]`` with empty ``choices`` and the request's token usage."""


class ChatCompletionRequest(_Lenient):
    """``POST /v1/chat/completions``: the last message is the question, the messages before it the history."""

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    """OpenAI's newer name for ``max_tokens``; wins when both are given."""
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1)
    tools: list[Any] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Source(BaseModel):
    """A passage the answer cites as ``[marker]``."""

    marker: int
    source: str
    page: int | None = None
    chunk_id: str
    snippet: str


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class ChatCompletion(BaseModel):
    """A whole answer (``stream`` false)."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None
    sources: list[Source]
    slmkit: dict[str, Any]
    """Route and why, guard report, timings in ms, and whether the assistant abstained."""


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    """One server-sent event of a streamed answer; the last content chunk also carries ``sources`` and ``slmkit``."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    system_fingerprint: str | None = None
    usage: Usage | None = None
    sources: list[Source] | None = None
    slmkit: dict[str, Any] | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "slmkit"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """OpenAI's error shape, so clients raise their usual exceptions (``openai.BadRequestError`` ...)."""

    error: ErrorDetail
