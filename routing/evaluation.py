"""Router quality as RouteLLM measures it: quality against the share of strong calls, APGR and CPT.

Given per-prompt correctness of a weak and a strong model and a router's scores (higher = strong), thresholds at
the score quantiles (``bins`` equal-count bins, RouteLLM's ``pd.qcut``) give a curve of (share of strong calls,
accuracy). The strong route is taken where ``score >= threshold`` (``>`` for the top threshold, so the curve
reaches 0%):

- APGR, average performance gap recovered: (area under the curve - weak area) / (strong area - weak area);
  random routing scores about 0.5.
- CPT(x): the share of strong calls needed to recover x of the gap between the weak and the strong accuracy
  (interpolated on the curve; lower is better).

These follow ``routellm/evals/evaluate.py`` and ``benchmarks.py`` (lm-sys/RouteLLM), so figures compare.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

Values = Sequence[float] | Sequence[bool] | np.ndarray
"""Per-prompt scores or correctness flags."""

__all__ = ["RouterQuality", "apgr", "cpt", "evaluate_router", "oracle_scores", "routing_curve"]


def routing_curve(scores: Values, weak_correct: Values, strong_correct: Values, *, bins: int = 10) -> np.ndarray:
    """Rows of (share of strong calls in [0, 1], accuracy in [0, 1]), sorted by share."""
    s = np.asarray(scores, dtype=np.float64)
    weak = np.asarray(weak_correct, dtype=np.float64)
    strong = np.asarray(strong_correct, dtype=np.float64)
    thresholds = np.quantile(s, np.linspace(0, 1, bins + 1))
    points = []
    for i, t in enumerate(thresholds):
        chosen = s >= t if i < len(thresholds) - 1 else s > t
        points.append((chosen.mean(), np.where(chosen, strong, weak).mean()))
    return np.asarray(sorted(points))


def apgr(scores: Values, weak_correct: Values, strong_correct: Values, *, bins: int = 10) -> float:
    """Average performance gap recovered (0 = the weak model's accuracy throughout, 1 = the strong model's)."""
    curve = routing_curve(scores, weak_correct, strong_correct, bins=bins)
    share, accuracy = curve[:, 0], curve[:, 1]
    weak, strong = float(np.mean(weak_correct)), float(np.mean(strong_correct))
    span = share[-1] - share[0]
    area = float(np.trapezoid(accuracy, share))
    return float((area - weak * span) / ((strong - weak) * span))


def cpt(scores: Values, weak_correct: Values, strong_correct: Values, gap: float, *, bins: int = 10) -> float:
    """Share of strong calls that recovers ``gap`` (e.g. 0.5) of the weak-strong accuracy gap."""
    curve = routing_curve(scores, weak_correct, strong_correct, bins=bins)
    weak, strong = float(np.mean(weak_correct)), float(np.mean(strong_correct))
    return float(np.interp(weak + gap * (strong - weak), curve[:, 1], curve[:, 0]))


def oracle_scores(weak_correct: Values, strong_correct: Values) -> np.ndarray:
    """Scores of the oracle: strong first where only it is right, weak kept where only the weak one is right."""
    weak = np.asarray(weak_correct, dtype=bool)
    strong = np.asarray(strong_correct, dtype=bool)
    return np.asarray((strong & ~weak).astype(np.float64) - 0.5 * (weak & ~strong), dtype=np.float64)


class RouterQuality(BaseModel):
    """APGR and CPT of one router on one set."""

    name: str
    apgr: float
    cpt50: float
    cpt80: float
    n: int


def evaluate_router(
    name: str, scores: Values, weak_correct: Values, strong_correct: Values, *, bins: int = 10
) -> RouterQuality:
    return RouterQuality(
        name=name,
        apgr=apgr(scores, weak_correct, strong_correct, bins=bins),
        cpt50=cpt(scores, weak_correct, strong_correct, 0.5, bins=bins),
        cpt80=cpt(scores, weak_correct, strong_correct, 0.8, bins=bins),
        n=len(scores),
    )
