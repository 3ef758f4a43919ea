"""Routing: policies in code that send each request to the local SLM or to a larger LLM, and say why.

A ``RoutingPolicy`` names its ``Route``s (any LangChain chat model, with prices, a context window and a privacy
flag), composes rules (PII, length, keywords, semantic similarity, a learned router), a cascade (answer locally,
escalate when unsure), a budget and fallbacks. ``RoutedChatModel`` applies it as a LangChain chat model and puts a
``RoutingDecision`` into every response; ``RoutingStats`` adds the decisions up. Imports are lazy: scikit-learn,
the embedders and the PII detector load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slmkit.core.lazy import lazy_exports

if TYPE_CHECKING:
    from slmkit.routing.budget import Budget
    from slmkit.routing.cascade import (
        Cascade,
        CombinedConfidence,
        ConfidenceSignal,
        ConsistencyConfidence,
        GroundingConfidence,
        LogprobConfidence,
        SelfCheckConfidence,
    )
    from slmkit.routing.chat_model import RoutedChatModel
    from slmkit.routing.decision import RouteAttempt, RoutingDecision, Signal
    from slmkit.routing.learned import LearnedRouter
    from slmkit.routing.policy import RoutingPlan, RoutingPolicy
    from slmkit.routing.request import RoutingRequest
    from slmkit.routing.routes import Route
    from slmkit.routing.rules import KeepLocalIfPII, Keywords, Learned, PreferLargeIfLong, Rule, Semantic
    from slmkit.routing.server import LlamaServer
    from slmkit.routing.static_embedding import StaticEmbeddings
    from slmkit.routing.stats import RoutingStats, StatsReport

__all__ = [
    "Budget",
    "Cascade",
    "CombinedConfidence",
    "ConfidenceSignal",
    "ConsistencyConfidence",
    "GroundingConfidence",
    "KeepLocalIfPII",
    "Keywords",
    "Learned",
    "LearnedRouter",
    "LlamaServer",
    "LogprobConfidence",
    "PreferLargeIfLong",
    "Route",
    "RouteAttempt",
    "RoutedChatModel",
    "RoutingDecision",
    "RoutingPlan",
    "RoutingPolicy",
    "RoutingRequest",
    "RoutingStats",
    "Rule",
    "SelfCheckConfidence",
    "Semantic",
    "Signal",
    "StaticEmbeddings",
    "StatsReport",
]

_LAZY = {
    "Budget": "slmkit.routing.budget",
    "Cascade": "slmkit.routing.cascade",
    "ConfidenceSignal": "slmkit.routing.cascade",
    "CombinedConfidence": "slmkit.routing.cascade",
    "ConsistencyConfidence": "slmkit.routing.cascade",
    "GroundingConfidence": "slmkit.routing.cascade",
    "LogprobConfidence": "slmkit.routing.cascade",
    "SelfCheckConfidence": "slmkit.routing.cascade",
    "RoutedChatModel": "slmkit.routing.chat_model",
    "RouteAttempt": "slmkit.routing.decision",
    "RoutingDecision": "slmkit.routing.decision",
    "Signal": "slmkit.routing.decision",
    "LearnedRouter": "slmkit.routing.learned",
    "RoutingPlan": "slmkit.routing.policy",
    "RoutingPolicy": "slmkit.routing.policy",
    "RoutingRequest": "slmkit.routing.request",
    "Route": "slmkit.routing.routes",
    "KeepLocalIfPII": "slmkit.routing.rules",
    "Keywords": "slmkit.routing.rules",
    "Learned": "slmkit.routing.rules",
    "PreferLargeIfLong": "slmkit.routing.rules",
    "Rule": "slmkit.routing.rules",
    "Semantic": "slmkit.routing.rules",
    "LlamaServer": "slmkit.routing.server",
    "StaticEmbeddings": "slmkit.routing.static_embedding",
    "RoutingStats": "slmkit.routing.stats",
    "StatsReport": "slmkit.routing.stats",
}


__getattr__ = lazy_exports(__name__, _LAZY)
