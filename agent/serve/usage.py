"""Token usage of one answer, summed over the model calls it took, for the ``usage`` field of a response.

A callback handler is put in place for every LangChain model call made inside ``counting_usage()`` (through a
context variable, like langchain-core's ``get_usage_metadata_callback``), so nothing in the assistant has to pass it
along. A ``RoutedChatModel`` reports again the usage of the route it delegated to; its messages carry a
``routing_decision`` and are skipped, so every token counts once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.tracers.context import register_configure_hook

__all__ = ["UsageCounter", "counting_usage"]

_ROUTED = "routing_decision"


class UsageCounter(BaseCallbackHandler):
    """Adds up ``usage_metadata`` of the model calls that generated tokens themselves."""

    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.calls = 0
        self.finish_reason: str | None = None
        """Of the last call: ``length`` when it stopped at ``max_tokens``."""
        self._lock = threading.Lock()

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        for generations in response.generations:
            for generation in generations:
                if not isinstance(generation, ChatGeneration) or not isinstance(generation.message, AIMessage):
                    continue
                message = generation.message
                if message.usage_metadata is None or _ROUTED in message.response_metadata:
                    continue
                with self._lock:
                    self.prompt_tokens += message.usage_metadata.get("input_tokens", 0)
                    self.completion_tokens += message.usage_metadata.get("output_tokens", 0)
                    self.calls += 1
                    self.finish_reason = message.response_metadata.get("finish_reason")


_current: ContextVar[UsageCounter | None] = ContextVar("slmkit_serve_usage", default=None)
register_configure_hook(_current, inheritable=True)


@contextmanager
def counting_usage() -> Iterator[UsageCounter]:
    """Count the tokens of every model call made in this block (in this thread or context)."""
    counter = UsageCounter()
    token = _current.set(counter)
    try:
        yield counter
    finally:
        _current.reset(token)
