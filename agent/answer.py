"""What the assistant returns: an ``Answer`` (text, citations, routing decision, guard report, timings) and the
events ``Assistant.stream`` yields (``TokenEvent`` for each piece of text, then one ``AnswerEvent``).

All are pydantic models, so an answer serialises to JSON as it is (``answer.model_dump(mode="json")``), e.g. for
the HTTP server or a log.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from slmkit.guards.report import GuardReport
from slmkit.routing.decision import RoutingDecision

__all__ = ["Answer", "AnswerEvent", "AssistantEvent", "Citation", "TokenEvent"]


class Citation(BaseModel):
    """One retrieved passage the answer rests on; ``marker`` is the number in the answer text (``[2]``)."""

    marker: int
    source: str
    """Path of the document, as ingested."""
    page: int | None = None
    """Page of a PDF (1-based), None for formats without pages."""
    chunk_id: str
    snippet: str
    """The passage text the model was shown (shortened)."""
    lines: tuple[int, int] | None = None
    """First and last line of the passage in the source, where the loader knows them."""
    headings: str | None = None
    """The section path of the passage, e.g. ``"Handbook > Vacation"``."""
    relevance: float | None = None
    """Cosine similarity of the passage to the (standalone) question."""


class Answer(BaseModel):
    """A grounded answer and everything needed to judge it."""

    text: str
    citations: list[Citation] = Field(default_factory=list)
    """The passages the answer rests on, in the order of their first use in the text."""
    routing: RoutingDecision | None = None
    """Which route answered and why (None when the model is not a ``RoutedChatModel``, or nothing was asked)."""
    guard_report: GuardReport | None = None
    """PII findings on the question, grounding of the answer in the passages (None without guards)."""
    timings: dict[str, float] = Field(default_factory=dict)
    """Milliseconds: ``rewrite_ms``, ``retrieve_ms``, ``first_token_ms``, ``generate_ms``, ``guards_ms``,
    ``total_ms`` (``first_token_ms`` and ``total_ms`` count from the start of the call)."""
    abstained: bool = False
    """True when the documents do not answer the question: nothing relevant was retrieved, the model said the
    sources do not say, or the profile's decline rule judged the answer unsupported. The text then says so (and
    the citations are the closest passages), instead of an answer from the model's own knowledge."""
    query: str = ""
    """The standalone query that was searched (differs from the question for rewritten follow-ups)."""
    signals: dict[str, float] = Field(default_factory=dict)
    """What the decision to answer or decline rested on (``slmkit.agent.decline``): retrieval relevance, question
    coverage, answer support, token probabilities, and ``answer_score`` when the profile has a decline rule."""


class TokenEvent(BaseModel):
    """A piece of the answer text as the model produced it."""

    type: Literal["token"] = "token"
    text: str


class AnswerEvent(BaseModel):
    """The last event of a stream: the complete, checked answer (its text may differ from the streamed tokens:
    citation markers are added and invalid ones removed, and guards may have changed it)."""

    type: Literal["answer"] = "answer"
    answer: Answer


AssistantEvent = TokenEvent | AnswerEvent
