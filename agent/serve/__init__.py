"""An OpenAI-compatible HTTP API over an ``Assistant``, so OpenAI clients and chat UIs can use it.

``schema`` (the wire format), ``convert`` (requests to questions, answers to responses), ``usage`` (token counts),
``worker`` (one thread for the model), ``app`` (the FastAPI app) and ``run_server`` (uvicorn on a host and port).
FastAPI and uvicorn come with the ``routing`` extra and are imported only here.

Example:
    .. code-block:: python

        from slmkit.agent import Assistant
        from slmkit.agent.serve import run_server

        run_server(Assistant.from_defaults(), host="127.0.0.1", port=8000)
        # then: OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="-").chat.completions.create(model="slmkit", ...)
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from slmkit.core.errors import MissingDependencyError, ServerStartError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from slmkit.agent.assistant import Assistant

__all__ = ["bind", "create_app", "run_server", "warm_up"]


def create_app(assistant: Assistant, **kwargs: Any) -> FastAPI:
    """The FastAPI app over ``assistant``; see :func:`slmkit.agent.serve.app.create_app` for the options."""
    try:
        from slmkit.agent.serve.app import create_app as _create_app
    except ImportError as exc:
        raise MissingDependencyError("fastapi", extra="routing", purpose="slmkit serve") from exc
    return _create_app(assistant, **kwargs)


def warm_up(assistant: Assistant, question: str = "What are these documents about?") -> None:
    """Load the local model, embedder, index and guards now (one answer of one token), so that the server is
    ready when it says so and the first request is as quick as the next."""
    from slmkit.agent.claims import is_claim
    from slmkit.agent.serve.app import with_overrides

    routes = getattr(getattr(assistant.model, "policy", None), "routes", {})
    for model in [assistant.model, *(route.model for route in routes.values())]:
        if callable(getattr(model, "load", None)):  # a ChatLocalSLM: loaded even if nothing is retrieved
            model.load()
    with_overrides(assistant, {"max_tokens": 1}).ask(question)
    if assistant.config.claims_as_questions:
        is_claim("These documents describe the company.")  # loads the tagger the first statement would wait for


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` for the server to listen on; a clear error if the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServerStartError(
            f"Cannot listen on {host}:{port} ({exc.strerror or exc}). Pick another --port (0 lets the system "
            "choose), or stop what uses it."
        ) from exc
    return sock


def run_server(
    assistant: Assistant,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    sock: socket.socket | None = None,
    log_level: str = "warning",
    on_ready: Callable[[str], None] | None = None,
    **kwargs: Any,
) -> None:
    """Serve ``assistant`` until interrupted (SIGINT / SIGTERM), on ``sock`` if given (see :func:`bind`), else on
    ``host:port``. ``on_ready(url)`` is called once the port is bound; ``kwargs`` go to :func:`create_app`."""
    try:
        import uvicorn
    except ImportError as exc:
        raise MissingDependencyError("uvicorn", extra="routing", purpose="slmkit serve") from exc
    app = create_app(assistant, **kwargs)
    sock = sock or bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    if on_ready is not None:
        on_ready(f"http://{bound_host if ':' not in bound_host else f'[{bound_host}]'}:{bound_port}/v1")
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=5))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
