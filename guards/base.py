"""What every guard implements, and the per-call state guards share.

A guard sees text, not LangChain objects: the wrappers (``Guarded``, ``GuardMiddleware``) take the text out of
messages, prompts and chain outputs, hand it to each guard in order, and put the result back:

    input text  -> guard.check_input(text, call)  -> text the model sees   (may raise GuardBlockedError)
    output text -> guard.check_output(text, call) -> text the user sees
    output chunks -> guard.stream_output(call).feed(chunk) ... .flush()    (streaming, where the guard allows it)

:class:`GuardCall` carries what the guards of one call share: the report they append to, the conversation's
pseudonym vault, and the retrieved context and question the grounding guard checks the answer against.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from slmkit.guards.report import GuardReport
from slmkit.guards.vault import PIIVault

__all__ = ["ContextItem", "Guard", "GuardCall", "StreamTransform"]

ContextItem = Any
"""One piece of retrieved context: a string, a LangChain ``Document``, or a mapping (structured data)."""


class StreamTransform(Protocol):
    """Rewrites a stream of text chunks; ``flush`` returns what was held back when the stream ends."""

    def feed(self, chunk: str) -> str: ...

    def flush(self) -> str: ...


class _Passthrough:
    def feed(self, chunk: str) -> str:
        return chunk

    def flush(self) -> str:
        return ""


@dataclass
class GuardCall:
    """State shared by the guards of one call (one model or chain invocation)."""

    report: GuardReport = field(default_factory=GuardReport)
    vault: PIIVault = field(default_factory=PIIVault)
    context: Sequence[ContextItem] = ()
    """Retrieved context the answer should be grounded in."""
    question: str | None = None

    @contextmanager
    def timed(self, key: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.report.add_timing(key, (time.perf_counter() - start) * 1000)


class Guard:
    """Base class of input and output guards; override the hooks a guard needs.

    Example:
        .. code-block:: python

            class NoShouting(Guard):
                name = "no_shouting"

                def check_output(self, text: str, call: GuardCall) -> str:
                    return text.lower() if text.isupper() else text

            Guarded(llm, output_guards=[NoShouting()])
    """

    name: str = "guard"
    streams_output: bool = True
    """False when the guard must see the whole answer before any of it may be shown (the wrapper then buffers)."""

    def check_input(self, text: str, call: GuardCall) -> str:
        """Text the model may see, derived from ``text`` (or raise ``GuardBlockedError``)."""
        return text

    def check_output(self, text: str, call: GuardCall) -> str:
        """Text the user may see, derived from the model's answer ``text``."""
        return text

    def stream_output(self, call: GuardCall) -> StreamTransform:
        """A transform for one streamed answer; only used when ``streams_output`` is true."""
        return _Passthrough()

    def finish_stream(self, text: str, call: GuardCall) -> None:
        """Called with the whole streamed answer after its last chunk (e.g. to score it for the report)."""


def context_text(item: ContextItem) -> str:
    """The text of one context item (a Document's page content, a mapping as ``key: value`` lines)."""
    if isinstance(item, str):
        return item
    content = getattr(item, "page_content", None)
    if isinstance(content, str):
        return content
    if isinstance(item, Mapping):
        return "\n".join(_flatten(item))
    return str(item)


_CAMEL_CASE = re.compile(r"(?<=[a-z])(?=[A-Z])")


def _flatten(value: Any, key: str = "") -> Iterator[str]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            name = _CAMEL_CASE.sub(" ", str(k))  # "OutdoorSeating" -> "Outdoor Seating": words a sentence would use
            yield from _flatten(v, f"{key} {name}" if key else name)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _flatten(v, key)
    else:
        yield f"{key}: {value}" if key else str(value)
