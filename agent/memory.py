"""Conversation memory for ``Assistant.chat``, and turning a follow-up into a question that stands on its own.

    "How many vacation days do I get?"  ->  answer
    "Do they carry over?"               ->  follow-up? (a pronoun, or too short to search on)
                                        ->  the model rewrites it: "Do vacation days carry over?"
                                        ->  checked (not empty, not an answer, shares words with the conversation)
                                            else the previous question + the follow-up is searched instead

The retriever only sees one string, so a follow-up must carry its subject; the answer prompt still gets the
question as the user asked it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from slmkit.guards.text import STOPWORDS, content_words, words

__all__ = ["ConversationMemory", "check_rewrite", "fallback_query", "looks_like_follow_up"]

_REFERRING = frozenset(
    [
        *("it", "its", "it's", "they", "them", "their", "theirs", "this", "that", "these", "those"),
        *("he", "him", "his", "she", "her", "there", "such", "same", "one", "ones"),
    ]
)
_LABEL = re.compile(r"^\s*(?:standalone question|question|rewritten question|rewrite)\s*:\s*", re.IGNORECASE)


class ConversationMemory:
    """The turns of one conversation (question, answer), oldest first; keeps the last ``max_turns``."""

    def __init__(self, max_turns: int = 8) -> None:
        self.max_turns = max_turns
        self._turns: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def add(self, question: str, answer: str) -> None:
        with self._lock:
            self._turns.append((question, answer))
            del self._turns[: -self.max_turns]

    def clear(self) -> None:
        with self._lock:
            self._turns.clear()

    def __len__(self) -> int:
        return len(self._turns)

    def messages(self, last: int | None = None) -> list[BaseMessage]:
        """The last ``last`` turns (all when None) as human and AI messages."""
        with self._lock:
            turns = self._turns if last is None else self._turns[-last:] if last > 0 else []
            return [m for q, a in turns for m in (HumanMessage(q), AIMessage(a))]


def looks_like_follow_up(question: str) -> bool:
    """A question that points back (a pronoun such as "it" or "they") or has fewer than three content words."""
    tokens = [w.lower() for w in words(question)]
    if any(t in _REFERRING for t in tokens):
        return True
    return len([t for t in tokens if t not in STOPWORDS and not t[0].isdigit()]) < 3


def last_question(history: Sequence[BaseMessage]) -> str:
    for message in reversed(history):
        if isinstance(message, HumanMessage) and isinstance(message.content, str):
            return message.content
    return ""


def fallback_query(question: str, history: Sequence[BaseMessage]) -> str:
    """The previous question and the follow-up together: crude, but it keeps the subject for the retriever."""
    previous = last_question(history)
    return f"{previous} {question}".strip() if previous else question


def check_rewrite(rewrite: str, question: str, history: Sequence[BaseMessage]) -> str | None:
    """The cleaned rewrite, or None when it is unusable: empty, much longer than a question, a copy of an answer,
    or not sharing a content word with both an earlier question (the subject) and the follow-up (what is asked)."""
    text = _LABEL.sub("", rewrite.strip().splitlines()[0] if rewrite.strip() else "").strip().strip("\"'").strip()
    if not text or len(text) > max(200, 3 * len(question)):
        return None
    answers = {m.content.strip() for m in history if isinstance(m, AIMessage) and isinstance(m.content, str)}
    if text in answers:
        return None
    mine = set(content_words(text))
    asked = {
        w
        for m in history
        if isinstance(m, HumanMessage) and isinstance(m.content, str)
        for w in content_words(m.content)
    }
    follow_up = set(content_words(question))
    if not mine & asked or (follow_up and not mine & follow_up):
        return None
    return text
