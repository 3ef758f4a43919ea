"""A local OpenAI-compatible server (llama-cpp-python's) on loopback, as a real remote route for tests and examples.

``LlamaServer`` starts ``python -m llama_cpp.server`` with a GGUF on 127.0.0.1 and a free port, waits until
``/v1/models`` answers, hands out a ``ChatOpenAI`` pointed at it, and stops the process on exit. ``kill()`` ends it
abruptly, to test fallbacks on a remote that dies mid-run.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from slmkit.core.errors import MissingDependencyError, ServerStartError

__all__ = ["LlamaServer", "free_port"]

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class LlamaServer:
    """llama-cpp-python's OpenAI-compatible server for one GGUF, on 127.0.0.1.

    Example:
        .. code-block:: python

            with LlamaServer(resolve_model_path("qwen2.5-coder-0.5b-instruct")) as server:
                llm = server.chat_model(temperature=0)        # langchain_openai.ChatOpenAI
                llm.invoke("Say hi").content
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        port: int | None = None,
        alias: str = "local-llm",
        n_ctx: int = 4096,
        n_threads: int | None = None,
        startup_timeout: float = 180.0,
    ) -> None:
        self.model_path = Path(model_path)
        self.port = port or free_port()
        self.alias = alias
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> LlamaServer:
        """Start the server and wait until it serves ``/v1/models``."""
        try:
            import llama_cpp.server  # noqa: F401
        except ImportError as exc:
            raise MissingDependencyError("llama-cpp-python[server]", extra="routing", purpose="LlamaServer") from exc
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model_path), "--host", HOST]
        command += ["--port", str(self.port), "--model_alias", self.alias, "--n_ctx", str(self.n_ctx)]
        command += ["--verbose", "False"]
        if self.n_threads:
            command += ["--n_threads", str(self.n_threads)]
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - open as long as the server runs
        self._process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise ServerStartError(f"The llama.cpp server exited while starting:\n{self.log_tail()}")
            with (
                contextlib.suppress(urllib.error.URLError, OSError),
                urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as response,
            ):
                if response.status == 200:
                    return
            time.sleep(0.25)
        self.stop()
        raise ServerStartError(
            f"The llama.cpp server did not answer on {self.base_url} within {self.startup_timeout:.0f} s; "
            f"raise startup_timeout on a slow machine.\n{self.log_tail()}"
        )

    def log_tail(self, chars: int = 2000) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return str(self._log.read().decode(errors="replace")[-chars:])

    def chat_model(self, **kwargs: Any) -> Any:
        """A ``langchain_openai.ChatOpenAI`` for this server (no retries, so failures reach the router at once).

        langchain-openai sends ``max_tokens`` as ``max_completion_tokens``, which llama.cpp's server ignores; the
        limit is therefore also sent under its old name.
        """
        try:
            from langchain_openai import ChatOpenAI
        except ImportError as exc:
            raise MissingDependencyError(
                "langchain-openai", extra="routing", purpose="OpenAI-compatible routes"
            ) from exc
        settings: dict[str, Any] = {"timeout": 120, "max_retries": 0, **kwargs}
        if settings.get("max_tokens") is not None:
            settings["extra_body"] = {"max_tokens": settings["max_tokens"], **(settings.get("extra_body") or {})}
        return ChatOpenAI(base_url=self.base_url, api_key="not-needed", model=self.alias, **settings)

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after ``timeout`` seconds)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """End the server at once (SIGKILL), as a crash would."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(10)

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
