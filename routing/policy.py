"""``RoutingPolicy``: routes, rules, cascade, budget and fallbacks in one typed object, checked at construction.

``plan(request)`` decides without calling any model, in four steps:

    1. constraints that cost nothing: the conversation must fit the route's context window; priced routes must fit
       the budget                                                          -> allowed routes
    2. preferences: the first rule that fires and asks for an allowed route; else a conversation's route when
       sessions are sticky; else the cascade's first route (escalation planned), else the default route
    3. fallbacks: the routes to try, in order, if the chosen one fails
    4. privacy, only if a non-local route may be called: PII in any message rules out non-local routes (or marks
       the request for pseudonymization)                                   -> RoutingPlan(decision, chain, ...)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import ConfigDict, Field, model_validator

from slmkit.core.config import SlmkitConfig
from slmkit.core.errors import ConfigurationError, NoRouteError
from slmkit.routing.budget import Budget
from slmkit.routing.cascade import Cascade
from slmkit.routing.decision import RoutingDecision, Signal
from slmkit.routing.request import RoutingRequest
from slmkit.routing.routes import Route
from slmkit.routing.rules import KeepLocalIfPII, Rule
from slmkit.routing.stats import RoutingStats

__all__ = ["RoutingPlan", "RoutingPolicy"]


@dataclass
class RoutingPlan:
    """What to do with one request: the routes to try in order, the escalation target, and the partial decision."""

    decision: RoutingDecision
    chain: list[str]
    """The chosen route, then its fallbacks."""
    escalate_to: str | None = None
    pii: dict[int, list[Any]] = field(default_factory=dict)
    """Findings per message index, when non-local routes get pseudonymized messages."""


class RoutingPolicy(SlmkitConfig):
    """How requests are routed, written in code.

    Example:
        .. code-block:: python

            policy = RoutingPolicy(
                routes={"slm": Route(model=ChatLocalSLM(), local=True),
                        "llm": Route(model=ChatOpenAI(...), input_usd_per_1k=0.0004, output_usd_per_1k=0.0016,
                                     context_window=128_000)},
                rules=[KeepLocalIfPII(), PreferLargeIfLong(tokens=1500), Keywords(words=["prove"], route="llm")],
                cascade=Cascade(first="slm", then="llm", escalate_below=0.55),
                budget=Budget(usd_per_day=2.0),
            )
            policy.plan(RoutingRequest([HumanMessage("hi")])).decision.reason
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    routes: dict[str, Route]
    """Named targets; order matters only for picking defaults (the first local route)."""
    rules: list[Rule | KeepLocalIfPII] = Field(default_factory=list)
    """Preferences, first that fires wins; ``KeepLocalIfPII`` anywhere in the list sets the privacy constraint."""
    default: str | None = None
    """Route when no rule fires and there is no cascade; None: the cascade's first route, else the first local one."""
    strong: str | None = None
    """Route that rules without a ``route`` ask for; None: the cascade's second route, else the priciest route."""
    cascade: Cascade | None = None
    budget: Budget | None = None
    fallbacks: dict[str, list[str]] | None = None
    """Route -> routes to try, in order, when it fails; None: every non-local route falls back to the default."""
    expected_output_tokens: int = Field(default=256, ge=1)
    """Answer length assumed for cost estimates and context-window checks before a call."""

    @model_validator(mode="after")
    def _check(self) -> RoutingPolicy:
        if not self.routes:
            raise ConfigurationError("A RoutingPolicy needs at least one route.")
        names = set(self.routes)

        def known(what: str, name: str | None) -> None:
            if name is not None and name not in names:
                raise ConfigurationError(f"{what} names route {name!r}, but the policy's routes are {sorted(names)}.")

        known("default", self.default)
        known("strong", self.strong)
        if self.cascade is not None:
            known("cascade.first", self.cascade.first)
            known("cascade.then", self.cascade.then)
        for source, targets in (self.fallbacks or {}).items():
            known("fallbacks", source)
            for target in targets:
                known(f"fallbacks[{source!r}]", target)
            if source in targets:
                raise ConfigurationError(f"Route {source!r} lists itself as its own fallback.")
        privacy = [r for r in self.rules if isinstance(r, KeepLocalIfPII)]
        if len(privacy) > 1:
            raise ConfigurationError("List KeepLocalIfPII at most once: a policy has one privacy constraint.")
        # Rules without a route ask for the strong route; resolve and check every route name now.
        object.__setattr__(
            self,
            "rules",
            [r if isinstance(r, KeepLocalIfPII) else r.resolved(self.routes, self.strong_route) for r in self.rules],
        )
        return self

    # -- derived settings ------------------------------------------------------------------------------------
    @property
    def default_route(self) -> str:
        if self.default is not None:
            return self.default
        if self.cascade is not None:
            return self.cascade.first
        return next((n for n, r in self.routes.items() if r.local), next(iter(self.routes)))

    @property
    def strong_route(self) -> str:
        if self.strong is not None:
            return self.strong
        if self.cascade is not None:
            return self.cascade.then
        return max(self.routes, key=lambda n: (self.routes[n].output_usd_per_1k, self.routes[n].context_window))

    @property
    def privacy(self) -> KeepLocalIfPII:
        """The privacy constraint: the listed one, else the default (applies whenever a route is non-local)."""
        return next((r for r in self.rules if isinstance(r, KeepLocalIfPII)), None) or _DEFAULT_PRIVACY

    @property
    def preferences(self) -> list[Rule]:
        return [r for r in self.rules if isinstance(r, Rule)]

    def fallbacks_for(self, route: str) -> list[str]:
        if self.fallbacks is not None:
            return list(self.fallbacks.get(route, []))
        default = self.default_route
        return [] if self.routes[route].local or route == default else [default]

    # -- deciding --------------------------------------------------------------------------------------------
    def plan(
        self, request: RoutingRequest, *, stats: RoutingStats | None = None, session_route: str | None = None
    ) -> RoutingPlan:
        """Decide where ``request`` goes, without calling a model."""
        started = time.perf_counter()
        signals: list[Signal] = []
        allowed = self._allowed(request, stats, signals)
        choice, rule, reason = self._preferred(request, allowed, signals, session_route)
        escalate_to = None
        if choice is None:
            choice, escalate_to, reason = self._default_choice(allowed)
        chain = [choice, *(f for f in self.fallbacks_for(choice) if f in allowed and f != choice)]
        decision = RoutingDecision(
            route=choice,
            planned_route=choice,
            reason=reason,
            rule=rule,
            signals=signals,
            allowed_routes=sorted(allowed),
            cascade=escalate_to is not None,
            session_id=request.session_id,
            estimated_input_tokens=request.estimated_tokens,
        )
        plan = RoutingPlan(decision=decision, chain=chain, escalate_to=escalate_to)
        self._apply_privacy(request, plan, allowed)
        route = self.routes[plan.decision.planned_route]
        plan.decision.estimated_cost_usd = route.cost(request.estimated_tokens, self.expected_output_tokens)
        plan.decision.overhead_ms = (time.perf_counter() - started) * 1000
        return plan

    def _allowed(self, request: RoutingRequest, stats: RoutingStats | None, signals: list[Signal]) -> set[str]:
        """Routes the cheap constraints leave open: context window, then budget."""
        needed = request.estimated_tokens + self.expected_output_tokens
        allowed = {n for n, r in self.routes.items() if needed <= r.context_window}
        too_small = sorted(set(self.routes) - allowed)
        signals.append(
            Signal(
                name="context",
                value=needed,
                fired=bool(too_small),
                detail=f"too long for {too_small}" if too_small else "",
            )
        )
        if not allowed:
            raise NoRouteError(
                f"The conversation needs about {needed} tokens, more than any route's context window "
                f"({max(r.context_window for r in self.routes.values())}). Trim the history or add a larger route."
            )
        if self.budget is not None and stats is not None:
            blocked: dict[str, str] = {}
            for name in sorted(allowed):
                route = self.routes[name]
                if not route.free:
                    cost = route.cost(request.estimated_tokens, self.expected_output_tokens)
                    why = self.budget.blocks(stats, session_id=request.session_id, cost_usd=cost, tokens=needed)
                    if why:
                        blocked[name] = why
            spent = stats.spent_today().cost_usd
            signals.append(
                Signal(
                    name="budget",
                    value=round(spent, 6),
                    fired=bool(blocked),
                    detail="; ".join(f"{n}: {w}" for n, w in blocked.items()),
                )
            )
            allowed -= set(blocked)
            if not allowed:
                raise NoRouteError(f"The budget rules out every route ({blocked}); add a free local route.")
        return allowed

    def _preferred(
        self, request: RoutingRequest, allowed: set[str], signals: list[Signal], session_route: str | None
    ) -> tuple[str | None, str | None, str]:
        """The first firing rule's allowed route, unless a sticky conversation keeps its own: (route, rule, reason)."""
        choice, rule, reason, forced = None, None, "", False
        for preference in self.preferences:
            signal = preference.evaluate(request)
            signals.append(signal)
            if signal.fired and signal.route in allowed:
                choice, rule, forced = signal.route, preference.name, preference.force
                reason = f"{preference.name} asked for {choice!r} ({signal.name}={signal.value})"
                break
            if signal.fired:
                signal.detail += f"; {signal.route!r} not allowed"
        if session_route is None or session_route not in allowed or forced or session_route == choice:
            return choice, rule, reason
        return (
            session_route,
            None,
            f"the conversation stays on {session_route!r}" + (f" (over {reason})" if reason else ""),
        )

    def _default_choice(self, allowed: set[str]) -> tuple[str, str | None, str]:
        cascade = self.cascade
        if cascade is not None and cascade.first in allowed:
            if cascade.then in allowed:
                return cascade.first, cascade.then, f"no rule fired: cascade {cascade.first!r} -> {cascade.then!r}"
            return cascade.first, None, f"no rule fired: {cascade.first!r} (escalation to {cascade.then!r} not allowed)"
        if self.default_route in allowed:
            return self.default_route, None, f"no rule fired: default route {self.default_route!r}"
        fallback = self._first_local(allowed) or sorted(allowed)[0]
        return fallback, None, f"no rule fired and the default route is not allowed: {fallback!r}"

    def _first_local(self, allowed: set[str]) -> str | None:
        return next((n for n, r in self.routes.items() if r.local and n in allowed), None)

    def _apply_privacy(self, request: RoutingRequest, plan: RoutingPlan, allowed: set[str]) -> None:
        """Scan for PII only if a non-local route may be called; then rule those out, or plan pseudonymization."""
        in_play = [*plan.chain, *([plan.escalate_to] if plan.escalate_to else [])]
        if all(self.routes[n].local for n in in_play):
            return
        privacy = self.privacy
        from slmkit.routing.privacy import find_pii

        found = find_pii(privacy.get_detector(), request.messages)
        kinds = sorted({f.entity_type for fs in found.values() for f in fs})
        decision = plan.decision
        decision.signals.append(
            Signal(name="pii", value=sum(len(f) for f in found.values()), fired=bool(found), detail=", ".join(kinds))
        )
        if not found:
            return
        if privacy.pseudonymize:
            plan.pii = found
            decision.pseudonymized = not self.routes[plan.chain[0]].local
            return
        plan.chain = [n for n in plan.chain if self.routes[n].local]
        if plan.escalate_to is not None and not self.routes[plan.escalate_to].local:
            plan.escalate_to = None
            decision.cascade = False
        if not plan.chain:
            local = self._first_local(allowed)
            if local is None:
                raise NoRouteError(
                    f"The request contains private data ({', '.join(kinds)}) and no local route is allowed. Add a "
                    "local route, or KeepLocalIfPII(pseudonymize=True) to send placeholders instead."
                )
            plan.chain = [local]
            decision.rule = "KeepLocalIfPII"
        decision.reason = f"private data ({', '.join(kinds)}) stays local; {decision.reason}"
        decision.route = decision.planned_route = plan.chain[0]


_DEFAULT_PRIVACY = KeepLocalIfPII()
