"""Guards around every response: PII protection and grounding (hallucination) checks, as LangChain components.

``PIIGuard`` finds PII with Presidio (offline) and blocks, redacts, masks, hashes or pseudonymizes it;
``GroundingGuard`` scores each sentence of an answer against the retrieved context. ``Guarded`` wraps any Runnable
(chat model, chain) with them, ``GuardMiddleware`` does the same for a ``create_agent`` agent, and every result
carries a ``GuardReport`` in ``response_metadata['guard_report']``. Imports are lazy: Presidio, spaCy and the
embedding model load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slmkit.core.lazy import lazy_exports

if TYPE_CHECKING:
    from slmkit.guards.base import Guard, GuardCall
    from slmkit.guards.grounding import GroundingGuard, GroundingGuardConfig
    from slmkit.guards.middleware import GuardMiddleware
    from slmkit.guards.pii import PIIGuard, PIIGuardConfig
    from slmkit.guards.report import GroundingResult, GuardReport, PIIFinding, SentenceSupport
    from slmkit.guards.runnable import Guarded
    from slmkit.guards.slm_scoring import LlamaTokenScorer, TokenScorer
    from slmkit.guards.vault import PIIVault, StreamRestorer

__all__ = [
    "GroundingGuard",
    "GroundingGuardConfig",
    "GroundingResult",
    "Guard",
    "GuardCall",
    "GuardMiddleware",
    "GuardReport",
    "Guarded",
    "LlamaTokenScorer",
    "PIIFinding",
    "PIIGuard",
    "PIIGuardConfig",
    "PIIVault",
    "SentenceSupport",
    "StreamRestorer",
    "TokenScorer",
]

_LAZY = {
    "Guard": "slmkit.guards.base",
    "GuardCall": "slmkit.guards.base",
    "GroundingGuard": "slmkit.guards.grounding",
    "GroundingGuardConfig": "slmkit.guards.grounding",
    "GuardMiddleware": "slmkit.guards.middleware",
    "PIIGuard": "slmkit.guards.pii",
    "PIIGuardConfig": "slmkit.guards.pii",
    "GroundingResult": "slmkit.guards.report",
    "GuardReport": "slmkit.guards.report",
    "PIIFinding": "slmkit.guards.report",
    "SentenceSupport": "slmkit.guards.report",
    "Guarded": "slmkit.guards.runnable",
    "LlamaTokenScorer": "slmkit.guards.slm_scoring",
    "TokenScorer": "slmkit.guards.slm_scoring",
    "PIIVault": "slmkit.guards.vault",
    "StreamRestorer": "slmkit.guards.vault",
}


__getattr__ = lazy_exports(__name__, _LAZY)
