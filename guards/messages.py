"""Guards applied to LangChain values: messages, prompts, documents, dicts, and streamed chunks.

Both wrappers (``Guarded`` and ``GuardMiddleware``) go through these functions, so a chain and an agent see the
same behaviour:

    input value  -> every text inside (message contents, text blocks, prompt messages, documents, dict values)
                    -> each input guard in order
    AIMessage    -> content -> each output guard in order; tool-call arguments -> pseudonyms restored only
                    -> ``response_metadata['guard_report']``
    stream       -> text chunks through each guard's stream transform (or buffered when a guard needs the whole
                    answer) -> a last chunk carrying the report
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from langchain_core.documents import Document
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, ToolMessage
from langchain_core.prompt_values import PromptValue

from slmkit.guards.base import Guard, GuardCall, StreamTransform

__all__ = [
    "REPORT_KEY",
    "GuardedStream",
    "context_from_messages",
    "guard_input",
    "guard_output",
    "guard_stream",
    "question_from_messages",
]

REPORT_KEY = "guard_report"
"""Where results carry their ``GuardReport``: ``response_metadata[REPORT_KEY]`` (or ``output[REPORT_KEY]``)."""


def _text_of(content: str | list[Any]) -> str:
    if isinstance(content, str):
        return content
    return "".join(b if isinstance(b, str) else b.get("text", "") for b in content if isinstance(b, str | dict))


def _map_content(content: str | list[Any], fn: Any) -> str | list[Any]:
    if isinstance(content, str):
        return str(fn(content))
    out: list[Any] = []
    for block in content:
        if isinstance(block, str):
            out.append(fn(block))
        elif isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
            out.append({**block, "text": fn(block["text"])})
        else:
            out.append(block)
    return out


def guard_input(value: Any, guards: Sequence[Guard], call: GuardCall) -> Any:
    """``value`` with every text inside it passed through the input guards (same type back)."""
    if not guards:
        return value

    def text(t: str) -> str:
        for guard in guards:
            t = guard.check_input(t, call)
        return t

    return _walk(value, text)


def _walk(value: Any, fn: Any) -> Any:
    if isinstance(value, str):
        return fn(value) if value.strip() else value
    if isinstance(value, BaseMessage):
        update: dict[str, Any] = {"content": _map_content(value.content, fn)}
        if isinstance(value, AIMessage) and value.tool_calls:
            update["tool_calls"] = [{**c, "args": _walk(c["args"], fn)} for c in value.tool_calls]
        return value.model_copy(update=update)
    if isinstance(value, PromptValue):
        return [_walk(m, fn) for m in value.to_messages()]
    if isinstance(value, Document):
        return value.model_copy(update={"page_content": fn(value.page_content)})
    if isinstance(value, Mapping):
        return {k: _walk(v, fn) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_walk(v, fn) for v in value)
    return value


def guard_output(value: Any, guards: Sequence[Guard], call: GuardCall) -> Any:
    """The runnable's output after the output guards, carrying the report where the type allows."""
    if isinstance(value, AIMessage):
        content = _map_content(value.content, lambda t: _check(t, guards, call))
        tool_calls = [{**c, "args": _restore(c["args"], call)} for c in value.tool_calls]
        meta = {**value.response_metadata, REPORT_KEY: call.report}
        return value.model_copy(update={"content": content, "tool_calls": tool_calls, "response_metadata": meta})
    if isinstance(value, str):
        return _check(value, guards, call)
    if isinstance(value, Mapping):
        out = dict(value)
        for key in ("answer", "output", "text", "result"):
            if key in out and isinstance(out[key], str | AIMessage):
                out[key] = guard_output(out[key], guards, call)
                break
        out[REPORT_KEY] = call.report
        return out
    return value


def _check(text: str, guards: Sequence[Guard], call: GuardCall) -> str:
    for guard in guards:
        text = guard.check_output(text, call)
    return text


def _restore(args: Any, call: GuardCall) -> Any:
    """Tool-call arguments get their real values back, and nothing else (they are not prose)."""
    return _walk(args, call.vault.restore)


def guard_stream(chunks: Iterator[Any], guards: Sequence[Guard], call: GuardCall) -> Iterator[Any]:
    """Stream output chunks (``AIMessageChunk`` or ``str``) through the output guards; the report comes last."""
    stream = GuardedStream(guards, call)
    for chunk in chunks:
        yield from stream.feed(chunk)
    yield from stream.close()


class GuardedStream:
    """The streaming state of one answer: ``feed`` each chunk, then ``close`` (sync and async wrappers share it)."""

    def __init__(self, guards: Sequence[Guard], call: GuardCall) -> None:
        self.guards, self.call = guards, call
        self.buffer = any(not g.streams_output for g in guards)
        self.transforms: list[StreamTransform] = [g.stream_output(call) for g in guards]
        self.tool_restorers: dict[Any, StreamTransform] = {}
        self.seen: list[str] = []
        self.kind: type | None = None
        self.merged: Any = None

    def feed(self, chunk: Any) -> list[Any]:
        if self.buffer:
            self.merged = chunk if self.merged is None else self.merged + chunk
            return []
        if isinstance(chunk, AIMessageChunk):
            self.kind = AIMessageChunk
            text = self._text(_text_of(chunk.content))
            tool_chunks = [
                {**tc, "args": self._restorer(tc.get("index")).feed(tc.get("args") or "")}
                for tc in chunk.tool_call_chunks
            ]
            return [chunk.model_copy(update={"content": text, "tool_call_chunks": tool_chunks})]
        if isinstance(chunk, str):
            self.kind = str
            return [self._text(chunk)]
        return [chunk]

    def close(self) -> list[Any]:
        if self.buffer:
            return [] if self.merged is None else [guard_output(self.merged, self.guards, self.call)]
        tail = _flush(self.transforms)
        self.seen.append(tail)
        for guard in self.guards:
            guard.finish_stream("".join(self.seen), self.call)
        if self.kind is str:
            return [tail] if tail else []
        leftover = {i: r.flush() for i, r in self.tool_restorers.items()}
        return [
            AIMessageChunk(
                content=tail,
                tool_call_chunks=[
                    {"index": i, "args": a, "name": None, "id": None, "type": "tool_call_chunk"}
                    for i, a in leftover.items()
                    if a
                ],
                response_metadata={REPORT_KEY: self.call.report},
            )
        ]

    def _text(self, text: str) -> str:
        text = _through(self.transforms, text)
        self.seen.append(text)
        return text

    def _restorer(self, index: Any) -> StreamTransform:
        return self.tool_restorers.setdefault(index, self.call.vault.restorer())


def _through(transforms: Sequence[StreamTransform], text: str) -> str:
    for transform in transforms:
        text = transform.feed(text)
    return text


def _flush(transforms: Sequence[StreamTransform]) -> str:
    """Flush each transform in order; what one releases still goes through the ones after it."""
    out = ""
    for transform in transforms:
        out = transform.feed(out) + transform.flush()
    return out


def question_from_messages(messages: Sequence[BaseMessage]) -> str | None:
    """The last human message's text: what the answer should answer."""
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return _text_of(message.content)
    return None


def context_from_messages(messages: Sequence[BaseMessage]) -> list[Any]:
    """Tool results since the last human message: in an agent, that is the retrieved context."""
    found: list[Any] = []
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            break
        if isinstance(message, ToolMessage):
            text = _text_of(message.content)
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            found.append(parsed if isinstance(parsed, dict) else text)
    return list(reversed(found))
