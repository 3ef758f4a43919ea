"""Budgets: a daily and a per-session spending limit that keep the policy on free (local) routes once spent.

The policy asks :meth:`Budget.blocks` for every priced route before a decision: spending so far comes from
:class:`~slmkit.routing.stats.RoutingStats` (exact costs of past calls), and the request's own estimated cost is
added, so a call that would overshoot the limit is not made either.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from slmkit.core.config import SlmkitConfig
from slmkit.routing.stats import RoutingStats

__all__ = ["Budget"]


class Budget(SlmkitConfig):
    """Spending limits in US dollars (UTC days) and tokens.

    Example:
        .. code-block:: python

            Budget(usd_per_day=2.0)
            Budget(usd_per_day=20.0, usd_per_session=0.5, tokens_per_day=2_000_000)
    """

    usd_per_day: float | None = Field(default=None, ge=0.0)
    usd_per_session: float | None = Field(default=None, ge=0.0)
    tokens_per_day: int | None = Field(default=None, ge=0)
    """Tokens (input + output) on priced routes per UTC day."""

    @model_validator(mode="after")
    def _some_limit(self) -> Budget:
        if self.usd_per_day is None and self.usd_per_session is None and self.tokens_per_day is None:
            raise ValueError("Budget needs at least one limit: usd_per_day, usd_per_session or tokens_per_day.")
        return self

    def blocks(self, stats: RoutingStats, *, session_id: str, cost_usd: float, tokens: int) -> str | None:
        """Why a priced call of this cost would break the budget, or None if it fits."""
        day = stats.spent_today()
        if self.usd_per_day is not None and day.cost_usd + cost_usd > self.usd_per_day:
            return f"daily budget ${self.usd_per_day:g} spent (${day.cost_usd:.4f} so far)"
        if self.tokens_per_day is not None and day.tokens + tokens > self.tokens_per_day:
            return f"daily token budget {self.tokens_per_day} spent ({day.tokens} so far)"
        if self.usd_per_session is not None:
            spent = stats.spent_in_session(session_id)
            if spent + cost_usd > self.usd_per_session:
                return f"session budget ${self.usd_per_session:g} spent (${spent:.4f} so far)"
        return None
