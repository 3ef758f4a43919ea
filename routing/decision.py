"""What a routing decision records: the signals and their values, the route and why, attempts, tokens and cost.

A policy fills a :class:`RoutingDecision` before any model is called (planned route, signals, reason, estimated
cost); the routed chat model completes it after the calls (the route that answered, each attempt and its failure,
whether the cascade escalated, exact tokens and actual cost) and puts it, as a plain dict, into the response's
``response_metadata["routing_decision"]``. ``RoutingDecision.from_message`` reads it back.
"""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.messages import BaseMessage
from pydantic import BaseModel, Field

__all__ = ["METADATA_KEY", "FailureKind", "RouteAttempt", "RoutingDecision", "Signal"]

METADATA_KEY = "routing_decision"
"""Key of the decision in ``AIMessage.response_metadata``."""

FailureKind = Literal["timeout", "connection", "rate_limit", "server", "context_overflow"]


class Signal(BaseModel):
    """One input to a decision: its name, its value, and whether it fired (asked for a route or ruled one out)."""

    name: str
    """Rule or signal name, e.g. ``pii``, ``length``, ``keywords``, ``semantic``, ``learned``, ``confidence``."""
    value: float | int | str | bool | None = None
    fired: bool = False
    route: str | None = None
    """The route it asked for, if any."""
    detail: str = ""


class RouteAttempt(BaseModel):
    """One call to one route: how it ended and what it cost."""

    route: str
    ok: bool
    failure: FailureKind | None = None
    error: str = ""
    """Exception type and message when the call failed."""
    input_tokens: int = 0
    output_tokens: int = 0
    exact_tokens: bool = False
    """True when the counts come from the model's usage metadata, False for tiktoken estimates."""
    cost_usd: float = 0.0
    latency_ms: float = 0.0


class RoutingDecision(BaseModel):
    """Where one request went, and why.

    Example:
        .. code-block:: python

            msg = routed.invoke("Summarise this contract ...")
            decision = RoutingDecision.from_message(msg)
            decision.route, decision.reason, decision.actual_cost_usd
            [s for s in decision.signals if s.fired]
    """

    route: str
    """The route whose answer was returned (after cascade and fallbacks)."""
    planned_route: str
    """The route the policy chose before any call."""
    reason: str
    rule: str | None = None
    """The rule that decided, or None for the policy's default (or cascade)."""
    signals: list[Signal] = Field(default_factory=list)
    allowed_routes: list[str] = Field(default_factory=list)
    """Routes the constraints (privacy, budget, context window) left open."""
    cascade: bool = False
    """True if the plan was 'answer with the first route, escalate when unsure'."""
    escalated: bool = False
    pseudonymized: bool = False
    """True if private data was replaced by placeholders before a non-local route saw it."""
    session_id: str | None = None
    estimated_input_tokens: int = 0
    estimated_cost_usd: float = 0.0
    actual_cost_usd: float | None = None
    reference_cost_usd: float | None = None
    """What this request would have cost on the policy's priciest route (same tokens, that route's prices)."""
    attempts: list[RouteAttempt] = Field(default_factory=list)
    overhead_ms: float = 0.0
    """Time the policy took to decide, without model calls."""

    @property
    def failures(self) -> list[RouteAttempt]:
        return [a for a in self.attempts if not a.ok]

    def signal(self, name: str) -> Signal | None:
        return next((s for s in self.signals if s.name == name), None)

    @classmethod
    def from_message(cls, message: BaseMessage) -> RoutingDecision:
        """The decision a routed model attached to ``message``."""
        data: Any = message.response_metadata.get(METADATA_KEY)
        if data is None:
            raise KeyError(f"The message carries no {METADATA_KEY!r}: it did not come from a RoutedChatModel.")
        return cls.model_validate(data)
