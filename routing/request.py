"""One request as the rules see it: the messages, the prompt text, a token estimate and a shared embedding.

Rules read the last user message (``prompt``) or the whole conversation (``texts``, ``estimated_tokens``). Values
are computed on first use and kept, so two semantic rules and a learned router on the same embedder embed the
prompt once per decision.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from slmkit.core.tokens import estimate_tokens
from slmkit.routing.embedding import embed_texts

if TYPE_CHECKING:
    import numpy as np
    from langchain_core.embeddings import Embeddings

__all__ = ["MESSAGE_OVERHEAD_TOKENS", "RoutingRequest", "message_text"]

MESSAGE_OVERHEAD_TOKENS = 4
"""Tokens a chat template adds per message (role markers); OpenAI's own estimate uses 3-4."""


def message_text(message: BaseMessage) -> str:
    """The text of a message (text blocks joined; tool calls as their JSON arguments)."""
    content = message.content
    if isinstance(content, str):
        text = content
    else:
        text = "".join(b if isinstance(b, str) else str(b.get("text", "")) for b in content)
    calls = getattr(message, "tool_calls", None) or []
    return text + "".join(f"\n{c['name']}({c['args']})" for c in calls)


class RoutingRequest:
    """The messages of one call, with lazily computed views for rules."""

    def __init__(self, messages: Sequence[BaseMessage], *, session_id: str | None = None) -> None:
        self.messages = list(messages)
        self._session_id = session_id
        self._embeddings: dict[int, np.ndarray] = {}

    @cached_property
    def texts(self) -> list[str]:
        return [message_text(m) for m in self.messages]

    @cached_property
    def prompt(self) -> str:
        """The last user message: what rules about *this* request look at."""
        for message, text in zip(reversed(self.messages), reversed(self.texts), strict=True):
            if isinstance(message, HumanMessage):
                return text
        return self.texts[-1] if self.texts else ""

    @cached_property
    def estimated_tokens(self) -> int:
        """Prompt tokens of the whole conversation, estimated with tiktoken (cl100k, offline)."""
        return sum(estimate_tokens(t) + MESSAGE_OVERHEAD_TOKENS for t in self.texts)

    @cached_property
    def session_id(self) -> str:
        """An explicit session id, else a hash of the conversation's opening (system + first user message).

        A conversation grows by appending, so its opening names it without any bookkeeping by the caller.
        """
        if self._session_id is not None:
            return self._session_id
        pairs = list(zip(self.messages, self.texts, strict=True))
        system = next((t for m, t in pairs if isinstance(m, SystemMessage)), "")
        first_user = next((t for m, t in pairs if isinstance(m, HumanMessage)), "")
        return hashlib.sha256(f"{system}\x1f{first_user}".encode()).hexdigest()[:16]

    def embedding(self, embedder: Embeddings) -> np.ndarray:
        """The prompt's embedding under ``embedder`` (L2-normalised), computed once per request and embedder."""
        key = id(embedder)
        vector = self._embeddings.get(key)
        if vector is None:
            vector = self._embeddings[key] = embed_texts(embedder, [self.prompt])[0]
        return vector
