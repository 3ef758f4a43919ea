"""The assistant's cascade: the local SLM answers first, and an answer it is unsure of is asked again of the
remote model, which reads the documents with its own profile (more and longer passages, its own prompt).

    question -> local answer (held back, not streamed)
             -> kept when: it declined (a decline is usually right: the documents do not hold the answer), nothing
                relevant was retrieved, private data keeps the question local, the remote route answered already,
                or its ``answer_score`` (the profile's decline rule; token ``min_prob`` without one) >= the threshold
             -> else the remote answer; if the remote route fails, the local answer stands and says why

Unlike ``slmkit.routing.Cascade`` (the same messages sent again to another chat model), the second model here gets
its own retrieval and prompt: a 1.5B model answers better from four whole passages than from the three short
excerpts that keep a 135M model on track. Measured on SQuAD 2.0 articles: ``benchmarks/cascade_squad.py``.
"""

from __future__ import annotations

from slmkit.agent.answer import Answer

__all__ = ["REMOTE_ROUTE", "escalated", "escalation_reason", "kept_local"]

REMOTE_ROUTE = "remote"
"""The route name of the remote model in the assistant's default router."""


def escalation_reason(answer: Answer, threshold: float) -> str | None:
    """Why the local ``answer`` goes to the remote model, or None when it stands."""
    if answer.abstained or not answer.signals:
        return None
    decision = answer.routing
    if decision is not None and (decision.route == REMOTE_ROUTE or REMOTE_ROUTE not in decision.allowed_routes):
        return None
    name = "answer_score" if "answer_score" in answer.signals else "min_prob"
    score = answer.signals.get(name)
    if score is None or score >= threshold:
        return None
    return f"the local answer's {name} {score:.3f} < {threshold}"


def escalated(local: Answer, remote: Answer, reason: str) -> Answer:
    """The remote answer, with a routing decision that says it was escalated and why, and the time both took."""
    base = remote.routing or local.routing
    routing = None
    if base is not None:
        routing = base.model_copy(
            update={
                "route": REMOTE_ROUTE,
                "planned_route": local.routing.planned_route if local.routing else base.planned_route,
                "reason": f"escalated: {reason}",
                "cascade": True,
                "escalated": True,
            }
        )
    local_ms = local.timings.get("total_ms", 0.0)
    timings = remote.timings | {
        "local_ms": local_ms,
        "first_token_ms": local_ms + remote.timings.get("first_token_ms", 0.0),
        "total_ms": local_ms + remote.timings.get("total_ms", 0.0),
    }
    signals = remote.signals | {f"local_{k}": v for k, v in local.signals.items() if k in ("answer_score", "min_prob")}
    return remote.model_copy(update={"routing": routing, "timings": timings, "signals": signals})


def kept_local(local: Answer, error: BaseException, endpoint: str) -> Answer:
    """The local answer when the remote route failed: the reason says what happened and where."""
    if local.routing is None:
        return local
    reason = (
        f"{local.routing.reason}; escalation failed ({type(error).__name__}: {error} at {endpoint}; is the server "
        "running?), the local answer stands"
    )
    return local.model_copy(update={"routing": local.routing.model_copy(update={"reason": reason, "cascade": True})})
