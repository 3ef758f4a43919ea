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

A server others can reach needs a key: ``run_server`` (and ``slmkit serve``) refuse a non-loopback host without
``api_key`` unless ``insecure_no_api_key=True`` (``--insecure-no-api-key``) says the network is trusted.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from slmkit.core.errors import ConfigurationError, MissingDependencyError, ServerStartError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from slmkit.agent.assistant import Assistant

__all__ = ["bind", "create_app", "exposure_error", "is_loopback", "run_server", "warm_up"]


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

    for model in assistant.local_models():  # loaded even if nothing is retrieved
        model.load()
    with_overrides(assistant, {"max_tokens": 1}).ask(question)
    if assistant.config.claims_as_questions:
        is_claim("These documents describe the company.")  # loads the tagger the first statement would wait for


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host``: ``localhost`` or a loopback address (``127.x``, ``::1``).

    Anything else (``0.0.0.0``, ``::``, ``""``, a LAN address, a host name) may be reachable from other machines.
    """
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_error(host: str, api_key: str | None, *, insecure_no_api_key: bool = False) -> str | None:
    """Why a server must not start on ``host`` with ``api_key`` (an empty key; no key where others can reach
    it); ``None`` when it may. The message names the flags that fix it."""
    if api_key is not None and not api_key.strip():
        return "--api-key (or $SLMKIT_API_KEY) is empty: give a real key, e.g. --api-key $(openssl rand -hex 16)."
    if api_key is None and not insecure_no_api_key and not is_loopback(host):
        return (
            f"--host {host or repr(host)} can be reached from other machines, and without a key anyone there could "
            "read your documents. Pass --api-key KEY (or set $SLMKIT_API_KEY; clients then send 'Authorization: "
            "Bearer KEY'), or --insecure-no-api-key if the network is trusted, or --host 127.0.0.1 for this "
            "machine only."
        )
    return None


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
    insecure_no_api_key: bool = False,
    **kwargs: Any,
) -> None:
    """Serve ``assistant`` until interrupted (SIGINT / SIGTERM), on ``sock`` if given (see :func:`bind`), else on
    ``host:port``. ``on_ready(url)`` is called once the port is bound; ``kwargs`` go to :func:`create_app`.

    Raises ``ConfigurationError`` for a host others can reach without ``api_key`` (see :func:`exposure_error`).
    """
    try:
        import uvicorn
    except ImportError as exc:
        raise MissingDependencyError("uvicorn", extra="routing", purpose="slmkit serve") from exc
    listening = str(sock.getsockname()[0]) if sock is not None else host
    if refusal := exposure_error(listening, kwargs.get("api_key"), insecure_no_api_key=insecure_no_api_key):
        raise ConfigurationError(refusal)
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
