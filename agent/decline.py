"""Whether an answer should be given at all: signals that exist before and after generation, and a fitted rule.

A small model answers almost every question with a plausible span from a nearby passage, whether or not the
documents hold the answer. So the assistant measures, per answer:

    passages + question -> ``top_relevance`` (embedding cosine of the best passage), ``top_rerank`` (cross-encoder
                           relevance of the best passage, when the retriever reranks), ``question_coverage`` (share of
                           the question's content words found in the best-covering passage), ``missing_names``
                           (capitalised words and numbers of the question found in no passage)
    answer              -> ``answer_support`` (share of the answer's content words and numbers found in the passages),
                           ``min_prob`` / ``mean_logprob`` (the model's token probabilities), ``refused`` (the model
                           said the documents do not say)

and a :class:`DeclineRule` (logistic weights and a threshold per model profile, fitted on SQuAD 2.0 articles with
whole articles left out, ``benchmarks/abstention_fit.py``) turns them into "answer" or "decline".
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

from pydantic import Field

from slmkit.core.config import SlmkitConfig
from slmkit.guards.text import content_words, numbers, words

__all__ = ["DeclineRule", "answer_signals", "passage_signals", "says_not_found"]

_NOT_FOUND = re.compile(
    r"\b(?:do(?:es)?(?: no|n')t (?:say|mention|answer|contain|provide|specify|state)"
    r"|(?:is|are) not (?:mentioned|stated|given|specified|provided)|no information)\b",
    re.IGNORECASE,
)


def says_not_found(text: str, refusal: str) -> bool:
    """Whether the model said the sources do not hold the answer: the instructed ``refusal`` or a common
    variant of it ("The sources do not mention ...", "There is no information ...")."""
    return refusal.rstrip(".").lower() in text.lower() or bool(_NOT_FOUND.search(text))


def _terms(text: str) -> set[str]:
    return set(content_words(text)) | set(numbers(text))


def _names(text: str) -> set[str]:
    """Capitalised words after the first word, and numbers: the specific terms a question hinges on."""
    found = {w.lower() for i, w in enumerate(words(text)) if i > 0 and w[:1].isupper() and len(w) > 1}
    return found | set(numbers(text))


def passage_signals(question: str, passages: Sequence[str], relevance: Sequence[float]) -> dict[str, float]:
    """What the retrieved passages say about the question, before any model call."""
    asked = _terms(question)
    covered = [len(asked & _terms(p)) / len(asked) if asked else 0.0 for p in passages]
    names = _names(question)
    lowered = " ".join(passages).lower()
    present = {n for n in names if n in lowered}
    return {
        "top_relevance": max(relevance, default=0.0),
        "question_coverage": max(covered, default=0.0),
        "missing_names": float(len(names - present)),
    }


def answer_signals(
    answer: str, passages: Sequence[str], confidence: Mapping[str, float], *, refused: bool
) -> dict[str, float]:
    """How well the answer rests on the passages, and how sure the model was of its tokens."""
    said = _terms(answer)
    shown: set[str] = set()
    for passage in passages:
        shown |= _terms(passage)
    return {
        "answer_support": len(said & shown) / len(said) if said else 0.0,
        "min_prob": float(confidence.get("min_prob", 0.0)),
        "mean_logprob": float(confidence.get("mean_logprob", -10.0)),
        "refused": 1.0 if refused else 0.0,
    }


class DeclineRule(SlmkitConfig):
    """Logistic score over signals (probability that the answer is right); below ``threshold``: decline."""

    weights: dict[str, float] = Field(default_factory=dict)
    """Weight of each signal (after ``scale``); signals not listed do not count."""
    bias: float = 0.0
    center: dict[str, float] = Field(default_factory=dict)
    """Subtracted from each signal before weighting (the training mean)."""
    scale: dict[str, float] = Field(default_factory=dict)
    """Each signal is divided by this (the training standard deviation)."""
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    """Decline when the score is below it; 0 never declines."""

    def score(self, signals: Mapping[str, float]) -> float:
        z = self.bias
        for name, weight in self.weights.items():
            value = (signals.get(name, 0.0) - self.center.get(name, 0.0)) / (self.scale.get(name) or 1.0)
            z += weight * value
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    def declines(self, signals: Mapping[str, float]) -> bool:
        return bool(self.weights) and self.score(signals) < self.threshold
