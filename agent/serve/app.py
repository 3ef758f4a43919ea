"""``create_app``: an OpenAI-compatible HTTP API over an ``Assistant`` (FastAPI).

    GET  /health                liveness, the one path answered without the API key
    GET  /v1/models             the one model this server offers (``model_name``)
    GET  /v1/models/{id}
    POST /v1/chat/completions   messages -> question + history -> Assistant (on the model worker thread)
         stream=false           -> chat.completion with ``usage``, ``sources`` and ``slmkit`` (route, guards, timings)
         stream=true            -> text/event-stream: a role chunk, one chunk per token, a last chunk with
                                   ``finish_reason``, ``sources`` and ``slmkit``, a usage chunk if
                                   ``stream_options.include_usage``, then ``data: [DONE]``

A streamed request answers with its HTTP status once the assistant produced its first event, so a request that
fails before any token (blocked by a guard, prompt too long) gets a proper error status, not a broken stream.
Errors use OpenAI's shape (``{"error": {"message", "type", "param", "code"}}``) so clients raise their usual
exceptions: 400 bad request (``context_length_exceeded`` for a question too long for the model), 401 wrong API key
(every path but ``/health``, only ``Bearer`` tokens; see ``gate``), 404 unknown model or path, 413 body too large,
503 busy or no route, 502 every route failed, 500 anything else.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from slmkit.agent.serve.convert import (
    RequestError,
    answer_extras,
    finish_reason_of,
    generation_overrides,
    question_and_history,
    sources_of,
    usage_of,
)
from slmkit.agent.serve.gate import Gate
from slmkit.agent.serve.limits import check_prompt_fits
from slmkit.agent.serve.schema import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Delta,
    ErrorBody,
    ErrorDetail,
    ModelCard,
    ModelList,
    ResponseMessage,
)
from slmkit.agent.serve.usage import UsageCounter, counting_usage
from slmkit.agent.serve.worker import ModelWorker
from slmkit.core.errors import (
    ConfigurationError,
    ContextOverflowError,
    GuardBlockedError,
    NoRouteError,
    RoutesFailedError,
    SlmkitError,
)

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage

    from slmkit.agent.assistant import Assistant

__all__ = ["create_app", "with_overrides"]

log = logging.getLogger("slmkit.serve")


def create_app(
    assistant: Assistant,
    *,
    model_name: str = "slmkit",
    api_key: str | None = None,
    max_waiting: int = 32,
    max_body_bytes: int = 1 << 20,
) -> FastAPI:
    """The HTTP app; ``assistant`` answers every request (it is called from one worker thread, one call at a time).

    Args:
        assistant: an ``Assistant`` (or any object with its ``ask``, ``stream`` and ``model``).
        model_name: the model id clients name in requests and ``/v1/models`` lists.
        api_key: when set, every request but ``GET /health`` must send ``Authorization: Bearer <api_key>``
            (the docs and the OpenAPI schema too).
        max_waiting: requests queued behind the running one before the server answers 503.
        max_body_bytes: larger request bodies get a 413 (1 MiB by default: thousands of times what the local
            model's context window holds).
    """
    if api_key is not None and not api_key.strip():
        raise ConfigurationError("api_key is empty: pass a real key, or None for a server without one.")
    worker = ModelWorker(max_waiting=max_waiting)
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        worker.shutdown()

    app = FastAPI(title="slmkit", lifespan=lifespan)
    app.add_middleware(Gate, api_key=api_key, max_body_bytes=max_body_bytes)
    app.state.worker = worker
    _install_error_handlers(app)

    def check_model(model: str) -> None:
        if model != model_name:
            raise RequestError(
                f"The model {model!r} does not exist on this server; it serves {model_name!r} (see GET /v1/models).",
                param="model",
                code="model_not_found",
                status=404,
            )

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def list_models() -> ModelList:
        return ModelList(data=[ModelCard(id=model_name, created=created)])

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> ModelCard:
        check_model(model_id)
        return ModelCard(id=model_name, created=created)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionRequest) -> Response:
        check_model(body.model)
        question, history = question_and_history(body)
        await asyncio.to_thread(check_prompt_fits, assistant, question, history)  # counting tokens takes a while
        answerer = with_overrides(assistant, generation_overrides(body))
        completion_id = f"chatcmpl-{secrets.token_hex(12)}"
        now = int(time.time())
        if body.stream:
            events = worker.stream(lambda: _answer_events(answerer, question, history))
            try:  # errors before the first token get their HTTP status
                first = await anext(events)
            except BaseException:
                await events.aclose()  # type: ignore[attr-defined]
                raise
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            chunks = _chunks(first, events, completion_id, now, model_name, include_usage)
            headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            return StreamingResponse(chunks, media_type="text/event-stream", headers=headers)
        answer, counter = await worker.run(lambda: _ask(answerer, question, history))
        completion = ChatCompletion(
            id=completion_id,
            created=now,
            model=model_name,
            choices=[Choice(message=ResponseMessage(content=answer.text), finish_reason=finish_reason_of(counter))],
            usage=usage_of(counter),
            sources=sources_of(answer),
            slmkit=answer_extras(answer),
        )
        return JSONResponse(completion.model_dump(mode="json"))

    return app


# -- calling the assistant (on the worker thread) ----------------------------------------------------------------
def with_overrides(assistant: Any, overrides: dict[str, Any]) -> Any:
    """The assistant with the request's sampling settings bound to its model (a shallow copy: the knowledge base,
    guards and loaded model are shared)."""
    if not overrides:
        return assistant
    variant = copy.copy(assistant)
    variant.model = assistant.model.bind(**overrides)
    return variant


def _ask(assistant: Any, question: str, history: list[BaseMessage]) -> tuple[Any, UsageCounter]:
    with counting_usage() as counter:
        answer = assistant.ask(question, history=history)
    return answer, counter


def _answer_events(assistant: Any, question: str, history: list[BaseMessage]) -> Iterator[Any]:
    """The assistant's events, then the token usage of the whole answer."""
    with counting_usage() as counter:
        yield from assistant.stream(question, history=history)
    yield counter


# -- streaming ---------------------------------------------------------------------------------------------------
async def _chunks(
    first: Any, events: AsyncIterator[Any], cid: str, created: int, model: str, include_usage: bool
) -> AsyncIterator[str]:
    """Server-sent events in OpenAI's chunk format, ending with ``data: [DONE]``."""

    def chunk(delta: Delta, finish: str | None = None, **extra: Any) -> str:
        data = ChatCompletionChunk(
            id=cid,
            created=created,
            model=model,
            choices=[ChunkChoice(delta=delta, finish_reason=finish)],
            **extra,
        )
        return _sse(data, include_usage)

    answer: Any = None
    counter: UsageCounter | None = None
    sent: list[str] = []
    try:
        yield chunk(Delta(role="assistant", content=""))
        event = first
        while True:
            if isinstance(event, UsageCounter):
                counter = event
            elif getattr(event, "type", None) == "token" and event.text:
                sent.append(event.text)
                yield chunk(Delta(content=event.text))
            elif getattr(event, "type", None) == "answer":
                answer = event.answer
            try:
                event = await anext(events)
            except StopAsyncIteration:
                break
        if answer is None or counter is None:
            raise RuntimeError("The assistant's stream ended without its answer event.")
        streamed = "".join(sent)
        extras = answer_extras(answer)
        if answer.text.startswith(streamed):  # e.g. a notice a guard appended
            if rest := answer.text[len(streamed) :]:
                yield chunk(Delta(content=rest))
        else:  # markers placed, or sentences changed by a guard, after the tokens went out
            extras["text"] = answer.text
        finish = finish_reason_of(counter)
        yield chunk(Delta(), finish, sources=sources_of(answer), slmkit=extras)
        if include_usage:
            data = ChatCompletionChunk(id=cid, created=created, model=model, choices=[], usage=usage_of(counter))
            yield _sse(data, include_usage)
        yield "data: [DONE]\n\n"
    except Exception as exc:  # the status line is sent: the error travels as an event, as OpenAI's does
        status, detail = _error_detail(exc)
        log.log(logging.ERROR if status >= 500 else logging.INFO, "stream failed: %s", exc, exc_info=status >= 500)
        yield f"data: {ErrorBody(error=detail).model_dump_json()}\n\n"
    finally:
        await events.aclose()  # type: ignore[attr-defined]


def _sse(chunk: ChatCompletionChunk, include_usage: bool) -> str:
    data = chunk.model_dump(mode="json")
    for choice in data["choices"]:
        choice["delta"] = {k: v for k, v in choice["delta"].items() if v is not None}
    for key in ("sources", "slmkit"):
        if data[key] is None:
            del data[key]
    if not include_usage:
        del data["usage"]
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


# -- errors ------------------------------------------------------------------------------------------------------
_SLMKIT_ERRORS: list[tuple[type[Exception], int, str, str]] = [
    (ContextOverflowError, 400, "invalid_request_error", "context_length_exceeded"),
    (GuardBlockedError, 400, "invalid_request_error", "guard_blocked"),
    (ConfigurationError, 400, "invalid_request_error", "invalid_value"),
    (NoRouteError, 503, "server_error", "no_route"),
    (RoutesFailedError, 502, "server_error", "routes_failed"),
]


def _error_detail(exc: Exception) -> tuple[int, ErrorDetail]:
    if isinstance(exc, RequestError):
        kind = "invalid_request_error" if exc.status < 500 else "server_error"
        return exc.status, ErrorDetail(message=exc.message, type=kind, param=exc.param, code=exc.code)
    for cls, status, kind, code in _SLMKIT_ERRORS:
        if isinstance(exc, cls):
            return status, ErrorDetail(message=str(exc), type=kind, code=code)
    if isinstance(exc, SlmkitError):
        return 500, ErrorDetail(message=str(exc), type="server_error", code=type(exc).__name__)
    return 500, ErrorDetail(
        message=f"Internal error ({type(exc).__name__}); the server log has the details.", type="server_error"
    )


def _json_error(status: int, detail: ErrorDetail) -> JSONResponse:
    return JSONResponse(ErrorBody(error=detail).model_dump(mode="json"), status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = [str(p) for p in first.get("loc", ()) if p != "body"]
        param = ".".join(where) or None
        message = f"{first.get('msg', 'Invalid request')}" + (f" (at {param})" if param else "")
        if len(errors) > 1:
            message += f"; and {len(errors) - 1} more problem(s)"
        return _json_error(400, ErrorDetail(message=message, type="invalid_request_error", param=param))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        message = str(exc.detail)
        code = "request_too_large" if exc.status_code == 413 else None
        if exc.status_code == 404:
            message = "Not found: this server offers GET /v1/models, POST /v1/chat/completions and GET /health."
        return _json_error(exc.status_code, ErrorDetail(message=message, type=kind, code=code))

    @app.exception_handler(RequestError)
    @app.exception_handler(SlmkitError)
    async def refused(_: Request, exc: Exception) -> JSONResponse:
        status, detail = _error_detail(exc)
        log.log(logging.ERROR if status >= 500 else logging.INFO, "request failed: %s", exc)
        return _json_error(status, detail)

    @app.exception_handler(Exception)
    async def failed(_: Request, exc: Exception) -> JSONResponse:  # Starlette logs the traceback itself
        status, detail = _error_detail(exc)
        return _json_error(status, detail)
