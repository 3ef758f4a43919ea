"""One exception tree for slmkit.

Every error derives from :class:`SlmkitError`. Where langchain-core has a type for the same failure, our error
also derives from it, so ``with_retry``, ``with_fallbacks`` and agent fallback middleware treat a local failure like
a remote one. Each message says what happened and what to do about it.
"""

from __future__ import annotations

from langchain_core.exceptions import ContextOverflowError as _LCContextOverflowError
from langchain_core.exceptions import ModelConnectionError as _LCModelConnectionError
from langchain_core.exceptions import ModelError as _LCModelError
from langchain_core.exceptions import ModelNotFoundError as _LCModelNotFoundError
from langchain_core.exceptions import OutputParserException

__all__ = [
    "ConfigurationError",
    "ContextOverflowError",
    "CorruptManifestError",
    "DocumentLoadError",
    "GuardBlockedError",
    "KnowledgeBaseError",
    "MalformedOutputError",
    "MissingDependencyError",
    "ModelIntegrityError",
    "ModelLoadError",
    "ModelNotFoundError",
    "NoRouteError",
    "RoutesFailedError",
    "ServerStartError",
    "SlmkitError",
    "StoreConnectionError",
]


class SlmkitError(Exception):
    """Root of every slmkit error."""


class ConfigurationError(SlmkitError, ValueError):
    """A setting or policy is malformed; raised at construction, before any work is done."""


class MissingDependencyError(SlmkitError, ImportError):
    """An optional package is not installed; the message names the pip command that installs it."""

    def __init__(self, package: str, *, extra: str | None = None, purpose: str = "") -> None:
        fix = f"pip install 'slmkit[{extra}]'" if extra else f"pip install {package}"
        what = f" (needed for {purpose})" if purpose else ""
        super().__init__(f"The package {package!r} is not installed{what}. Install it with: {fix}")
        self.package = package
        self.extra = extra


class ModelNotFoundError(SlmkitError, _LCModelNotFoundError, LookupError):
    """A model id is unknown, or its weights package is not installed."""


class ModelIntegrityError(SlmkitError, _LCModelError):
    """A model file is corrupt or incomplete (size or SHA-256 mismatch, or not a GGUF file)."""


class ModelLoadError(SlmkitError, _LCModelError, RuntimeError):
    """llama.cpp could not load a model file."""


class ContextOverflowError(SlmkitError, _LCContextOverflowError):
    """The prompt does not fit into the model's context window.

    Derives from langchain-core's ``ContextOverflowError``, so LangChain's summarisation and trimming middleware
    recognise it.
    """

    def __init__(self, prompt_tokens: int, n_ctx: int, *, model: str = "") -> None:
        on = f" of {model}" if model else ""
        super().__init__(
            f"The prompt has {prompt_tokens} tokens but the context window{on} holds {n_ctx}. "
            "Shorten the prompt (fewer or smaller retrieved chunks, trimmed history) or raise n_ctx "
            "when constructing the model."
        )
        self.prompt_tokens = prompt_tokens
        self.n_ctx = n_ctx


class MalformedOutputError(SlmkitError, OutputParserException):
    """The model's output could not be parsed (e.g. a tool call that is not valid JSON)."""


class DocumentLoadError(SlmkitError):
    """A document could not be read (unsupported type, corrupt file, no text layer).

    Ingestion reports the file with this message and goes on with the rest.
    """


class KnowledgeBaseError(SlmkitError):
    """A knowledge base cannot be opened or used as asked (e.g. another embedder built it)."""


class CorruptManifestError(KnowledgeBaseError):
    """A knowledge base's ``manifest.sqlite`` is damaged (not a database, or a malformed page).

    The message names the file and says how to start over from the documents; nothing in it can be trusted, so
    nothing is repaired silently.
    """


class StoreConnectionError(KnowledgeBaseError, ConnectionError):
    """The Chroma server of a knowledge base cannot be reached."""


class GuardBlockedError(SlmkitError, ValueError):
    """A guard refused a request or an answer (e.g. PII its policy blocks); nothing was sent or shown.

    ``report`` holds the guard report (findings and actions, never the values) when a wrapper raised it.
    """

    report: object | None = None


class NoRouteError(SlmkitError, _LCModelError):
    """No route of a routing policy may take a request (private data, budget and context window rule them out)."""


class RoutesFailedError(SlmkitError, _LCModelConnectionError):
    """Every route a request was sent to failed (timeout, refused connection, rate limit, server error).

    Derives from langchain-core's ``ModelConnectionError``, so ``with_retry`` and ``with_fallbacks`` treat it like
    an unreachable remote.
    """

    def __init__(self, failures: list[str]) -> None:
        super().__init__(
            "Every route failed: " + "; ".join(failures) + ". Check that the servers are up (or add a local route "
            "to the policy's fallbacks), then retry."
        )
        self.failures = failures


class ServerStartError(SlmkitError, _LCModelConnectionError, RuntimeError):
    """A local model server did not come up (it exited, or did not answer in time)."""
