"""Cascade: answer with the first (cheap, local) route, escalate to the second when the answer looks unsure.

    request ──► first route ──► answer ──► confidence signal ──► >= escalate_below ──► answer
                                                     └──────────► <  escalate_below ──► second route ──► answer

Confidence signals, each a score in [0, 1] (None when it cannot judge):

- :class:`LogprobConfidence`: the answer's token probabilities (``ChatLocalSLM``'s ``response_metadata
  ["confidence"]``, or OpenAI-style ``logprobs`` content) summarised as the geometric mean, mean or minimum;
- :class:`SelfCheckConfidence`: the model (or a judge model) is asked whether the answer is correct; the score is
  its probability of "yes";
- :class:`GroundingConfidence`: the grounding guard's support of the answer by the context in the conversation
  (system and tool messages), for retrieval-augmented answers;
- :class:`ConsistencyConfidence`: the route is asked again a few times at a temperature; the score is the share of
  samples that agree with the answer (self-consistency);
- :class:`CombinedConfidence`: a logistic combination of other signals, with weights fitted on labelled answers.
"""

from __future__ import annotations

import math
import re
import string
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from pydantic import ConfigDict, Field, model_validator

from slmkit.core.config import SlmkitConfig
from slmkit.routing.request import RoutingRequest, message_text

__all__ = [
    "Cascade",
    "CombinedConfidence",
    "ConfidenceSignal",
    "ConsistencyConfidence",
    "GroundingConfidence",
    "LogprobConfidence",
    "SelfCheckConfidence",
]

Measure = Literal["geometric_mean_prob", "mean_prob", "min_prob"]


class ConfidenceSignal(SlmkitConfig, ABC):
    """How sure an answer is, in [0, 1]; None if this signal cannot tell."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    @property
    def name(self) -> str:
        return type(self).__name__

    @abstractmethod
    def score(self, request: RoutingRequest, answer: AIMessage, model: BaseChatModel) -> float | None: ...


def token_confidence(message: AIMessage, measure: Measure, *, values_only: bool = False) -> float | None:
    """A summary of the answer's token probabilities, from ``confidence`` or OpenAI-style ``logprobs`` metadata.

    ``values_only``: only the tokens inside JSON string values (the answer's own words, not the keys and braces a
    grammar forces); needs per-token ``logprobs`` (e.g. ``ChatLocalSLM(logprobs=True)``).
    """
    meta = message.response_metadata
    summary = meta.get("confidence") or {}
    content = [t for t in (meta.get("logprobs") or {}).get("content") or [] if t.get("logprob") is not None]
    if values_only and content:
        inside = _json_value_tokens([str(t.get("token", "")) for t in content])
        content = [t for t, keep in zip(content, inside, strict=True) if keep] or content
    elif measure in summary:
        return float(summary[measure])
    logprobs = [float(t["logprob"]) for t in content]
    if not logprobs:
        return None
    if measure == "geometric_mean_prob":
        return math.exp(sum(logprobs) / len(logprobs))
    probs = [math.exp(lp) for lp in logprobs]
    return sum(probs) / len(probs) if measure == "mean_prob" else min(probs)


def _json_value_tokens(tokens: list[str]) -> list[bool]:
    """For each token, whether it overlaps a JSON string value (a string not followed by ':')."""
    text = "".join(tokens)
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(text):
        if text[i] != '"':
            i += 1
            continue
        j = i + 1
        while j < len(text) and text[j] != '"':
            j += 2 if text[j] == "\\" else 1
        if not text[j + 1 :].lstrip().startswith(":"):
            spans.append((i + 1, j))
        i = j + 1
    flags, start = [], 0
    for token in tokens:
        end = start + len(token)
        flags.append(any(a < end and start < b for a, b in spans))
        start = end
    return flags


class LogprobConfidence(ConfidenceSignal):
    """Token probabilities of the answer itself; free (no extra call).

    Example:
        .. code-block:: python

            Cascade(first="slm", then="llm", escalate_below=0.55, confidence=LogprobConfidence(measure="min_prob"))
    """

    measure: Measure = "geometric_mean_prob"
    values_only: bool = False
    """Only the tokens inside JSON string values: for structured answers, the label itself rather than the
    scaffold the grammar forces. Needs per-token log-probabilities (``ChatLocalSLM(logprobs=True)``)."""

    @property
    def name(self) -> str:
        return f"logprob:{self.measure}" + (":values" if self.values_only else "")

    def score(self, request: RoutingRequest, answer: AIMessage, model: BaseChatModel) -> float | None:
        return token_confidence(answer, self.measure, values_only=self.values_only)


SELF_CHECK_PROMPT = (
    "Here is a request and a proposed answer.\n\nRequest:\n{request}\n\nProposed answer:\n{answer}\n\n"
    "Is the proposed answer correct? Reply with one word: yes or no."
)


class SelfCheckConfidence(ConfidenceSignal):
    """Asks a model whether the answer is correct; the score is its probability of 'yes'. One short extra call.

    Example:
        .. code-block:: python

            SelfCheckConfidence()                            # the route that answered judges itself
            SelfCheckConfidence(judge=ChatLocalSLM(model="qwen2.5-coder-0.5b-instruct"))
    """

    judge: BaseChatModel | None = None
    """The model that judges; None: the route that answered."""
    prompt: str = SELF_CHECK_PROMPT

    def score(self, request: RoutingRequest, answer: AIMessage, model: BaseChatModel) -> float | None:
        judge = self.judge or model
        shown = message_text(answer)
        verdict = judge.invoke(
            [HumanMessage(self.prompt.format(request=request.prompt, answer=shown))],
            temperature=0.0,
            max_tokens=1,
            logprobs=True,
        )
        text = message_text(verdict).strip().lower()
        p = token_confidence(verdict, "geometric_mean_prob")
        if text.startswith("yes"):
            return 1.0 if p is None else p
        if text.startswith("no"):
            return 0.0 if p is None else 1.0 - p
        return None


class GroundingConfidence(ConfidenceSignal):
    """Support of the answer by the context in the conversation (system and tool messages), via the grounding guard.

    Example:
        .. code-block:: python

            GroundingConfidence()                            # slmkit.guards.GroundingGuard() on first use
            GroundingConfidence(checker=GroundingGuard(threshold=0.6))
    """

    checker: Any = None
    """Anything with ``check(answer=..., context=..., question=...) -> result`` with a ``score`` in [0, 1];
    None: ``slmkit.guards.GroundingGuard()``."""

    def score(self, request: RoutingRequest, answer: AIMessage, model: BaseChatModel) -> float | None:
        context = [
            t
            for m, t in zip(request.messages, request.texts, strict=True)
            if isinstance(m, SystemMessage | ToolMessage)
        ]
        if not context:
            return None
        if self.checker is None:
            from slmkit.guards import GroundingGuard

            self.checker = GroundingGuard()
        result = self.checker.check(answer=message_text(answer), context=context, question=request.prompt)
        return float(result.score)


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
Agreement = Literal["token_f1", "containment"]


def answer_words(text: str) -> list[str]:
    """SQuAD-style normalisation (lowercase, no punctuation, no articles), as words: "The Eiffel Tower." and
    "eiffel tower" are the same answer."""
    return _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split()


def token_f1(a: str, b: str) -> float:
    """SQuAD token F1 of two answers: the harmonic mean of the shares of each one's normalised words (with
    multiplicity) that the other one has; 0 if either is empty."""
    x, y = answer_words(a), answer_words(b)
    same = sum((Counter(x) & Counter(y)).values())
    if not same:
        return 0.0
    precision, recall = same / len(x), same / len(y)
    return 2 * precision * recall / (precision + recall)


def answers_agree(a: str, b: str, how: Agreement = "token_f1") -> bool:
    """Whether two answers say the same thing. ``token_f1``: token F1 >= 0.5 (two sentences that name the same
    entity in different words still agree); ``containment``: one normalised answer occurs in the other as a
    contiguous run of whole words ("Paris" and "It is Paris, France"; not "Paris" and "Parisian"). An empty answer
    agrees with nothing."""
    if how == "token_f1":
        return token_f1(a, b) >= 0.5
    x, y = answer_words(a), answer_words(b)
    return _occurs_in(y, x) if len(x) <= len(y) else _occurs_in(x, y)


def contains_answer(text: str, answer: str) -> bool:
    """Whether the normalised ``answer`` occurs in the normalised ``text`` as a contiguous run of whole words
    (False for an answer with no words)."""
    return _occurs_in(answer_words(text), answer_words(answer))


def _occurs_in(within: list[str], want: list[str]) -> bool:
    return bool(want) and any(within[i : i + len(want)] == want for i in range(len(within) - len(want) + 1))


class ConsistencyConfidence(ConfidenceSignal):
    """Self-consistency: the route answers the same request ``samples`` more times at ``temperature`` (seeds
    ``seed``, ``seed + 1``, ...); the score is the share of samples that agree with the answer being judged
    (:func:`answers_agree`, by default token F1 >= 0.5 after SQuAD normalisation). An answer the model would not
    give again when it samples is one it is unsure of. Costs ``samples`` extra calls of the route; meant for short
    free-text answers.

    The sampling settings go to ``invoke`` as keyword arguments (``temperature``, ``seed``, ``max_tokens``), which
    ``ChatLocalSLM`` and OpenAI-compatible models honour. A model that ignores them repeats its answer, so every
    answer it can reproduce scores 1: the signal then only flags answers the model does not reproduce, and never
    escalates the others. Set ``seed=None`` for APIs that reject a seed.

    Example:
        .. code-block:: python

            Cascade(first="slm", then="llm", escalate_below=0.6, confidence=ConsistencyConfidence(samples=5))
    """

    samples: int = Field(default=5, ge=1)
    temperature: float = Field(default=0.7, gt=0.0)
    seed: int | None = 0
    """Seed of the first sample (the others count up from it), so a score is reproducible; None: pass no seed."""
    max_tokens: int | None = Field(default=None, ge=1)
    """Limit of each sample; None: the route's own."""
    agreement: Agreement = "token_f1"

    @property
    def name(self) -> str:
        return f"consistency:{self.samples}@{self.temperature:g}:{self.agreement}"

    def sample(self, request: RoutingRequest, model: BaseChatModel) -> list[str]:
        """The texts of ``samples`` sampled answers of ``model`` to the request."""
        texts = []
        for i in range(self.samples):
            settings: dict[str, Any] = {"temperature": self.temperature}
            if self.seed is not None:
                settings["seed"] = self.seed + i
            if self.max_tokens is not None:
                settings["max_tokens"] = self.max_tokens
            texts.append(message_text(model.invoke(request.messages, **settings)))
        return texts

    def agreement_share(self, answer: str, samples: Sequence[str]) -> float:
        """The share of ``samples`` that agree with ``answer``."""
        return sum(answers_agree(answer, s, self.agreement) for s in samples) / len(samples)

    def score(self, request: RoutingRequest, answer: AIMessage, model: BaseChatModel) -> float | None:
        judged = message_text(answer)
        if not answer_words(judged):
            return 0.0  # nothing to agree with: as unsure as an answer gets
        return self.agreement_share(judged, self.sample(request, model))


class CombinedConfidence(ConfidenceSignal):
    """A logistic combination of signals, ``sigmoid(bias + sum(weight * score))``: signals that fail on different
    answers (token probabilities, grounding) rank answers better together than alone. Fit the weights on labelled
    answers of the first route (e.g. a logistic regression of "answer correct"), not on the items you evaluate.

    Example:
        .. code-block:: python

            CombinedConfidence(signals=[LogprobConfidence(), GroundingConfidence()], weights=[3.1, 2.4], bias=-2.9)
    """

    signals: list[ConfidenceSignal] = Field(min_length=1)
    weights: list[float]
    bias: float = 0.0
    missing: float | None = None
    """Score to use for a signal that cannot judge; None: the combination cannot judge either."""

    @model_validator(mode="after")
    def _one_weight_per_signal(self) -> CombinedConfidence:
        if len(self.weights) != len(self.signals):
            raise ValueError(
                f"CombinedConfidence needs one weight per signal; got {len(self.weights)} weights for "
                f"{len(self.signals)} signals."
            )
        return self

    @property
    def name(self) -> str:
        return "combined(" + ", ".join(s.name for s in self.signals) + ")"

    def combine(self, scores: Sequence[float | None]) -> float | None:
        """The combined score of the signals' scores (in the order of ``signals``)."""
        filled: list[float] = []
        for s in scores:
            if s is None and self.missing is None:
                return None
            filled.append(self.missing if s is None else s)  # type: ignore[arg-type]
        z = self.bias + sum(w * s for w, s in zip(self.weights, filled, strict=True))
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))

    def score(self, request: RoutingRequest, answer: AIMessage, model: BaseChatModel) -> float | None:
        return self.combine([signal.score(request, answer, model) for signal in self.signals])


class Cascade(SlmkitConfig):
    """Answer with ``first``; if the confidence is below ``escalate_below``, answer with ``then`` instead.

    Example:
        .. code-block:: python

            Cascade(first="slm", then="llm", escalate_below=0.55)
            Cascade(first="slm", then="llm", escalate_below=0.5, confidence=SelfCheckConfidence())
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    first: str
    then: str
    escalate_below: float = Field(default=0.5, ge=0.0, le=1.0)
    confidence: ConfidenceSignal = Field(default_factory=LogprobConfidence)
    escalate_when_unknown: bool = True
    """Escalate when the signal cannot judge (e.g. a route without log-probabilities)."""

    @model_validator(mode="after")
    def _distinct(self) -> Cascade:
        if self.first == self.then:
            raise ValueError(f"Cascade needs two different routes; first and then are both {self.first!r}.")
        return self

    def should_escalate(self, confidence: float | None) -> bool:
        return self.escalate_when_unknown if confidence is None else confidence < self.escalate_below
