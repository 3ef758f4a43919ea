"""Accounting of routing decisions: share per route, tokens and cost per route, and cost saved against always-LLM.

``RoutedChatModel`` records every completed :class:`RoutingDecision` here; budgets read today's and a session's
spending from it. Costs are exact where the route reported usage metadata (tiktoken estimates otherwise), and the
'always the priciest route' counterfactual prices each request's tokens at that route's rates.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime

from pydantic import BaseModel

from slmkit.routing.decision import RoutingDecision

__all__ = ["RouteTotals", "RoutingStats", "Spend", "StatsReport"]


class Spend(BaseModel):
    cost_usd: float = 0.0
    tokens: int = 0
    """Input + output tokens on priced routes."""


class RouteTotals(BaseModel):
    """What one route did: answers given, calls made (including failed and escalated-from ones), tokens, cost."""

    answers: int = 0
    share: float = 0.0
    """Share of all requests this route answered."""
    calls: int = 0
    failures: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


class StatsReport(BaseModel):
    """A summary of every decision recorded so far."""

    requests: int
    routes: dict[str, RouteTotals]
    escalations: int
    fallbacks: int
    """Requests answered by another route than the first one tried because a route failed."""
    pseudonymized: int
    cost_usd: float
    reference_cost_usd: float
    """What the same requests would have cost on the priciest route."""
    saved_usd: float
    mean_overhead_ms: float


class RoutingStats:
    """Thread-safe totals over routing decisions.

    Example:
        .. code-block:: python

            routed = RoutedChatModel(policy=policy)
            ...
            report = routed.stats.report()
            report.routes["slm"].share, report.saved_usd
    """

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._routes: dict[str, RouteTotals] = defaultdict(RouteTotals)
        self._days: dict[date, Spend] = defaultdict(Spend)
        self._sessions: dict[str, float] = defaultdict(float)
        self._counts: Counter[str] = Counter()
        self._cost = self._reference = self._overhead_ms = 0.0

    def record(self, decision: RoutingDecision) -> None:
        today = self._clock().date()
        with self._lock:
            self._counts["requests"] += 1
            self._counts["escalations"] += decision.escalated
            self._counts["pseudonymized"] += decision.pseudonymized
            self._counts["fallbacks"] += any(not a.ok for a in decision.attempts)
            self._routes[decision.route].answers += 1
            for attempt in decision.attempts:
                totals = self._routes[attempt.route]
                totals.calls += 1
                totals.failures += not attempt.ok
                totals.input_tokens += attempt.input_tokens
                totals.output_tokens += attempt.output_tokens
                totals.cost_usd += attempt.cost_usd
                if attempt.cost_usd > 0:
                    self._days[today].tokens += attempt.input_tokens + attempt.output_tokens
            cost = decision.actual_cost_usd or 0.0
            self._days[today].cost_usd += cost
            if decision.session_id is not None:
                self._sessions[decision.session_id] += cost
            self._cost += cost
            self._reference += decision.reference_cost_usd or 0.0
            self._overhead_ms += decision.overhead_ms

    def spent_today(self) -> Spend:
        with self._lock:
            return self._days[self._clock().date()].model_copy()

    def spent_in_session(self, session_id: str) -> float:
        with self._lock:
            return self._sessions.get(session_id, 0.0)

    def report(self) -> StatsReport:
        with self._lock:
            n = self._counts["requests"]
            routes = {
                name: t.model_copy(update={"share": t.answers / n if n else 0.0}) for name, t in self._routes.items()
            }
            return StatsReport(
                requests=n,
                routes=routes,
                escalations=self._counts["escalations"],
                fallbacks=self._counts["fallbacks"],
                pseudonymized=self._counts["pseudonymized"],
                cost_usd=self._cost,
                reference_cost_usd=self._reference,
                saved_usd=self._reference - self._cost,
                mean_overhead_ms=self._overhead_ms / n if n else 0.0,
            )
