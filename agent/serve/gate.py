"""``Gate``: what every HTTP request passes before any route sees it, so no route can forget it.

    API key     every path but ``/health`` needs ``Authorization: Bearer <key>`` when the server has a key: the
                API, and also ``/docs``, ``/redoc`` and ``/openapi.json`` (they describe it). Only the Bearer scheme
                counts: a bare key is refused, as OpenAI's API refuses it.
    body size   a declared ``Content-Length`` above ``max_body_bytes`` is refused before the app sees it, and a
                body sent without one is counted as it arrives: HTTP 413 either way, before JSON parsing allocates
                anything. The rest of the body is read and dropped first (up to ``DRAIN_BYTES``): a client that
                sends its whole body before reading the answer (urllib, many scripts) would otherwise get a
                connection reset instead of the 413.

It is plain ASGI (no ``BaseHTTPMiddleware``), so streamed responses pass through untouched. Refusals use OpenAI's
error shape, like every other error of the server.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["OPEN_PATHS", "BodyTooLarge", "Gate", "bearer_token"]

DRAIN_BYTES = 64 << 20
"""Most of a refused body read and dropped so that the client sees the 413; beyond it, the connection is closed."""

OPEN_PATHS = frozenset({"/health"})
"""Paths answered without the key: a load balancer's or a supervisor's liveness probe carries none."""


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a body without ``Content-Length`` outgrows the limit.

    An ``HTTPException``, so FastAPI's body parsing passes it on (it turns other exceptions into a 400) and the
    server's handler answers 413 in OpenAI's shape.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=too_large_message(limit))


def too_large_message(limit: int) -> str:
    return (
        f"The request body is larger than this server accepts ({limit:,} bytes). Send a shorter conversation: "
        "the model's context window holds far less than that."
    )


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; ``None`` for any other scheme or none."""
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            return token.strip() or None if scheme.lower() == "bearer" else None
    return None


class Gate:
    """ASGI middleware: the API key, then the body size (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, api_key: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.api_key = api_key.encode() if api_key is not None else None
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.api_key is not None and scope["path"] not in OPEN_PATHS and not self._authorized(scope):
            await _refuse(
                send,
                401,
                "Incorrect or missing API key: send 'Authorization: Bearer <key>' with the key the server was "
                "started with.",
                "invalid_api_key",
                extra_headers=[(b"www-authenticate", b"Bearer")],
            )
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            if declared <= DRAIN_BYTES:
                await _drain(receive, 0)
            await _refuse(send, 413, too_large_message(self.max_body_bytes), "request_too_large")
            return
        await self.app(scope, self._counting(receive), send)

    def _authorized(self, scope: Scope) -> bool:
        token = bearer_token(scope["headers"])
        return token is not None and self.api_key is not None and secrets.compare_digest(token.encode(), self.api_key)

    def _counting(self, receive: Receive) -> Receive:
        """``receive``, raising :class:`BodyTooLarge` once the body read so far exceeds the limit."""
        received = 0
        limit = self.max_body_bytes

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if message.get("more_body", False):
                        await _drain(receive, received)
                    raise BodyTooLarge(limit)
            return message

        return counted


async def _drain(receive: Receive, received: int) -> None:
    """Read and drop the rest of a request body, up to ``DRAIN_BYTES`` in all."""
    while received <= DRAIN_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return
        received += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _content_length(scope: Scope) -> int | None:
    """The declared body size; an unparseable header counts as too large (no honest client sends one)."""
    for name, value in scope["headers"]:
        if name.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else 1 << 62
    return None


async def _refuse(
    send: Send, status: int, message: str, code: str, extra_headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """An error response in OpenAI's shape, sent before the app sees the request."""
    body: dict[str, Any] = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra_headers or [])})
    await send({"type": "http.response.body", "body": data})
