"""``GroundingGuard``: does the retrieved context support each sentence of an answer?

    answer -> sentences (with citation markers) ─┐
    context (strings / Documents / mappings) -> ContextIndex (cached per context)
                                                 ├-> signals per sentence: lexical, structured, embedding, [slm]
                                                 └-> sentence model -> support per sentence in [0, 1]
    sentence features -> mean / min / share low, per feature -> answer model -> overall score -> verdict
    unsupported sentences -> action: annotate | drop | abstain | escalate
    citations "[2]" -> is the sentence supported by chunk 2 itself? if not, the citation is flagged

Both models were fitted with ``benchmarks/grounding.py --fit`` on the development sets (RAGTruth summary and
data2txt, HaluEval QA; sentence labels from the annotated hallucination spans); ``benchmarks/results/guards.md``
has the cross-validated figures. A feature that is switched off contributes nothing (as if at its training mean),
so any subset of signals works with the same weights.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field

from slmkit.core.config import SlmkitConfig
from slmkit.core.embeddings import SentenceTransformerEmbeddings
from slmkit.core.errors import ConfigurationError
from slmkit.guards.base import ContextItem, Guard, GuardCall
from slmkit.guards.grounding_signals import (
    EMBEDDING_FEATURES,
    LEXICAL_FEATURES,
    STRUCTURED_FEATURES,
    ContextIndex,
    embedding_features,
    lexical_features,
    structured_features,
)
from slmkit.guards.report import ActionTaken, GroundingAction, GroundingResult, SentenceSupport, Verdict
from slmkit.guards.slm_scoring import SLM_FEATURES, TokenScorer, slm_features
from slmkit.guards.text import Sentence, citations, split_sentences

__all__ = ["FEATURES", "GroundingGuard", "GroundingGuardConfig", "Signal"]

Signal = Literal["lexical", "structured", "embedding", "slm"]
FEATURES: dict[Signal, tuple[str, ...]] = {
    "lexical": LEXICAL_FEATURES,
    "structured": STRUCTURED_FEATURES,
    "embedding": EMBEDDING_FEATURES,
    "slm": SLM_FEATURES,
}
"""Feature names per signal, in the order of the weight vectors below."""


class LogisticModel:
    """A fitted logistic regression on standardised features; a missing feature takes its training mean (adds 0)."""

    def __init__(self, weights: dict[str, tuple[float, float, float]], bias: float) -> None:
        self.weights = weights
        """Feature name -> (mean, standard deviation on the training rows, weight on the standardised feature)."""
        self.bias = bias

    def probability(self, features: dict[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(features.values()))) if features else 1
        logit = np.full(n, self.bias)
        for name, (mean, sd, weight) in self.weights.items():
            if name in features and sd > 0:
                logit += weight * (features[name] - mean) / sd
        return np.asarray(1.0 / (1.0 + np.exp(-logit)), dtype=np.float64)


def aggregate(features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Answer-level features from sentence-level ones: mean, minimum, share of sentences below 0.5, and length."""
    out: dict[str, np.ndarray] = {}
    for name, values in features.items():
        out[f"{name}.mean"] = np.array([values.mean()])
        out[f"{name}.min"] = np.array([values.min()])
        out[f"{name}.low"] = np.array([(values < 0.5).mean()])
    if features:
        out["sentences.log"] = np.array([math.log(len(next(iter(features.values()))))])
    return out


# Fitted (monotone: more support in a feature never lowers a score) by `python benchmarks/grounding.py --fit` on
# RAGTruth summary + data2txt; HaluEval is kept out of training and scored out of domain. The sentence model
# predicts "this sentence is supported" from sentence features (label: the sentence overlaps no annotated
# hallucination); the answer model predicts "the answer is supported" (no annotated hallucination) from
# ``aggregate``.
SENTENCE_MODEL = LogisticModel(
    {
        "coverage": (0.6351, 0.2467, 0.0000),
        "local_coverage": (0.5484, 0.2492, 0.4089),
        "number_support": (0.9670, 0.1691, 0.1527),
        "name_support": (0.9451, 0.1995, 0.2489),
        "attribute_consistency": (0.9582, 0.2001, 0.5843),
        "max_similarity": (0.6525, 0.1559, 0.0264),
    },
    2.5954,
)
ANSWER_MODEL = LogisticModel(
    {
        "coverage.mean": (0.6570, 0.1649, 0.1267),
        "coverage.min": (0.3792, 0.2713, 0.0000),
        "coverage.low": (0.2284, 0.2260, -0.0189),
        "local_coverage.mean": (0.5733, 0.1760, 0.2143),
        "local_coverage.min": (0.3058, 0.2426, 0.0000),
        "local_coverage.low": (0.3555, 0.2875, -0.5058),
        "number_support.mean": (0.9625, 0.0772, 0.0000),
        "number_support.min": (0.7832, 0.3888, 0.0480),
        "number_support.low": (0.0326, 0.0753, 0.0000),
        "name_support.mean": (0.9492, 0.0730, 0.1484),
        "name_support.min": (0.6815, 0.4093, 0.0000),
        "name_support.low": (0.0338, 0.0661, 0.0000),
        "attribute_consistency.mean": (0.9651, 0.0714, 0.3339),
        "attribute_consistency.min": (0.7656, 0.4237, 0.0000),
        "attribute_consistency.low": (0.0349, 0.0714, -0.3339),
        "max_similarity.mean": (0.6609, 0.0888, 0.0000),
        "max_similarity.min": (0.4624, 0.1555, 0.0000),
        "max_similarity.low": (0.1387, 0.1450, 0.0000),
        "sentences.log": (1.9134, 0.4410, 0.0732),
    },
    0.1746,
)

# The same with the SLM signal (SmolLM2-135M), fitted on the seeded sample of `--slm 10` only (120 RAGTruth answers
# from 20 sources: the signal costs 20-35 s per answer on the shared 2-core benchmark machine), so less certain.
SENTENCE_MODEL_SLM = LogisticModel(
    {
        "coverage": (0.6071, 0.2498, -0.1014),
        "local_coverage": (0.5311, 0.2494, 0.6118),
        "number_support": (0.9727, 0.1534, 0.1433),
        "name_support": (0.9462, 0.1828, 0.0734),
        "attribute_consistency": (0.9611, 0.1935, 0.6497),
        "max_similarity": (0.6515, 0.1602, -0.2119),
        "mean_pmi": (0.8096, 0.9069, 0.5120),
        "mean_logprob": (-2.0861, 0.7468, 0.0271),
        "unexplained": (0.1932, 0.1157, 0.0644),
    },
    2.7972,
)
ANSWER_MODEL_SLM = LogisticModel(
    {
        "coverage.mean": (0.6275, 0.1754, 0.7952),
        "coverage.min": (0.3515, 0.2654, 0.1078),
        "coverage.low": (0.2804, 0.2670, 0.0344),
        "local_coverage.mean": (0.5539, 0.1827, 0.4506),
        "local_coverage.min": (0.2905, 0.2380, -0.6456),
        "local_coverage.low": (0.3915, 0.2997, -0.3344),
        "number_support.mean": (0.9687, 0.0667, 0.2796),
        "number_support.min": (0.8160, 0.3629, 0.4104),
        "number_support.low": (0.0279, 0.0668, 0.3649),
        "name_support.mean": (0.9495, 0.0643, -0.0090),
        "name_support.min": (0.6887, 0.3757, 0.1224),
        "name_support.low": (0.0247, 0.0533, 0.0196),
        "attribute_consistency.mean": (0.9684, 0.0649, 0.1834),
        "attribute_consistency.min": (0.7750, 0.4176, 0.5593),
        "attribute_consistency.low": (0.0316, 0.0649, -0.1834),
        "max_similarity.mean": (0.6647, 0.0987, 0.5697),
        "max_similarity.min": (0.4642, 0.1656, -0.2814),
        "max_similarity.low": (0.1363, 0.1550, 0.3599),
        "mean_pmi.mean": (0.9496, 0.6103, 0.5854),
        "mean_pmi.min": (0.1426, 0.5319, 0.1096),
        "mean_pmi.low": (0.4285, 0.3002, 0.3814),
        "mean_logprob.mean": (-2.0223, 0.4207, -0.6265),
        "mean_logprob.min": (-2.9384, 0.9844, 0.7764),
        "unexplained.mean": (0.1838, 0.0614, 0.6497),
        "unexplained.min": (0.0652, 0.0504, -0.1100),
        "unexplained.low": (0.9784, 0.0638, 0.1625),
        "sentences.log": (1.8855, 0.4571, 0.1695),
    },
    0.1260,
)

MODELS: dict[str, tuple[LogisticModel, LogisticModel]] = {
    "default": (SENTENCE_MODEL, ANSWER_MODEL),
    "slm": (SENTENCE_MODEL_SLM, ANSWER_MODEL_SLM),
}
"""(sentence model, answer model) per signal set: "slm" when the SLM signal is on, else "default"."""


class GroundingGuardConfig(SlmkitConfig):
    """Settings of a :class:`GroundingGuard`; every field has the value we recommend."""

    signals: tuple[Signal, ...] = ("lexical", "structured", "embedding")
    """Signals to combine. ``"slm"`` also needs a scorer (``GroundingGuard(scorer=...)``)."""
    threshold: float = Field(default=0.8, ge=0.0, le=1.0)
    """A sentence whose support is below this is unsupported. Nine in ten development sentences are supported, so
    supports are high; F1 of finding the unsupported ones is flat between 0.6 and 0.85 (0.36-0.38)."""
    answer_threshold: float = Field(default=0.65, ge=0.0, le=1.0)
    """An answer whose score is below this is not ``supported`` (maximised F1 on the development sets)."""
    action: GroundingAction = "annotate"
    """What to do with unsupported sentences."""
    marker: str = ""
    """Appended to each unsupported sentence by ``annotate``, e.g. " [unsupported]"; empty: the text is left as it
    is and the annotations are in the report (and streamed answers stay streamed)."""
    abstention: str = "The documents do not say this."
    """Replaces unsupported sentences (``abstain``), or the whole answer when ``drop`` leaves nothing."""
    check_citations: bool = True
    """Check that the chunk a citation marker ("[2]", "[doc-7]") points at supports the sentence."""


class GroundingGuard(Guard):
    """Scores each sentence of an answer against the retrieved context; an output guard.

    Example:
        .. code-block:: python

            guard = GroundingGuard()
            result = guard.check(answer="Paris is in France. It has 90 million people.",
                                 context=["Paris is the capital of France."])
            result.score, result.verdict, [s.score for s in result.sentences]

    ``embeddings``: any LangChain ``Embeddings`` (default: the packaged all-MiniLM-L6-v2, loaded on first use).
    ``scorer``: a :class:`TokenScorer` (or a function returning one, called on first use) for the ``slm`` signal,
    e.g. ``slmkit.agent.grounding_scorer.local_grounding_scorer()``.
    """

    name = "grounding"

    def __init__(
        self,
        config: GroundingGuardConfig | None = None,
        *,
        embeddings: Any = None,
        scorer: TokenScorer | Callable[[], TokenScorer] | None = None,
        **settings: Any,
    ) -> None:
        if config is not None and settings:
            raise ConfigurationError("Pass either a GroundingGuardConfig or keyword settings, not both.")
        self.config = config or GroundingGuardConfig(**settings)
        if "slm" in self.config.signals and scorer is None:
            raise ConfigurationError(
                "The 'slm' signal needs a token scorer: GroundingGuard(scorer=...), e.g. "
                "slmkit.agent.grounding_scorer.local_grounding_scorer(), or drop 'slm' from signals."
            )
        self.streams_output = self.config.action in ("annotate", "escalate") and not self.config.marker
        self._embeddings = embeddings
        self._scorer = scorer
        self._indexes: dict[int, ContextIndex] = {}
        self._lock = threading.Lock()

    # -- scoring ---------------------------------------------------------------------------------------------
    def check(
        self, *, answer: str, context: str | ContextItem | Sequence[ContextItem], question: str | None = None
    ) -> GroundingResult:
        """Per-sentence support and the overall verdict of ``answer`` against ``context``."""
        items = _as_items(context)
        sentences = split_sentences(answer)
        if not items or not any(str(i).strip() for i in items):
            return GroundingResult(score=0.0, verdict="no_context", threshold=self.config.answer_threshold)
        if not sentences:
            return GroundingResult(score=1.0, verdict="supported", threshold=self.config.answer_threshold)
        index = self.index(items)
        features = self.features(sentences, answer, index, question)
        supports = self._support(features)
        result = self._result(sentences, supports, features)
        if self.config.check_citations and len(items) > 1:
            self._check_citations(result, sentences, answer, items, question)
        return result

    def index(self, items: Sequence[ContextItem]) -> ContextIndex:
        """The prepared context (cached for the last few contexts, so several answers share the work)."""
        key = hash(tuple(_key(i) for i in items))
        with self._lock:
            index = self._indexes.get(key)
        if index is None:
            index = ContextIndex.build(items)
            with self._lock:
                if len(self._indexes) >= 8:
                    self._indexes.pop(next(iter(self._indexes)))
                self._indexes[key] = index
        return index

    def features(
        self, sentences: Sequence[Sentence], answer: str, index: ContextIndex, question: str | None
    ) -> dict[str, np.ndarray]:
        """Each enabled signal's features per sentence (columns named as in ``FEATURES``)."""
        out: dict[str, np.ndarray] = {}
        for signal in self.config.signals:
            if signal == "lexical":
                values = lexical_features(sentences, index)
            elif signal == "structured":
                values = structured_features(sentences, index)
            elif signal == "embedding":
                values = embedding_features(sentences, index, self._embedder())
            else:
                values = slm_features(sentences, answer, "\n\n".join(index.items), question, self._token_scorer())
            for j, name in enumerate(FEATURES[signal]):
                out[name] = values[:, j]
        return out

    def _support(self, features: dict[str, np.ndarray]) -> np.ndarray:
        return self._models()[0].probability(features)

    def _models(self) -> tuple[LogisticModel, LogisticModel]:
        return MODELS["slm" if "slm" in self.config.signals else "default"]

    def _result(
        self, sentences: Sequence[Sentence], supports: np.ndarray, features: dict[str, np.ndarray]
    ) -> GroundingResult:
        threshold = self.config.threshold
        score = float(self._models()[1].probability(aggregate(features))[0])
        rows = [
            SentenceSupport(
                index=i,
                start=s.start,
                end=s.end,
                text=s.text,
                score=round(float(p), 4),
                supported=bool(p >= threshold),
                signals={name: round(float(v[i]), 4) for name, v in features.items()},
                citations=citations(s.text),
            )
            for i, (s, p) in enumerate(zip(sentences, supports, strict=True))
        ]
        n_supported = sum(r.supported for r in rows)
        verdict: Verdict
        if score >= self.config.answer_threshold:
            verdict = "supported"
        elif 0 < n_supported < len(rows):
            verdict = "partially_supported"
        else:
            verdict = "unsupported"
        return GroundingResult(
            score=round(score, 4),
            verdict=verdict,
            threshold=self.config.answer_threshold,
            sentences=rows,
            signals=list(self.config.signals),
        )

    def _check_citations(
        self,
        result: GroundingResult,
        sentences: Sequence[Sentence],
        answer: str,
        items: Sequence[ContextItem],
        question: str | None,
    ) -> None:
        ids = _chunk_ids(items)
        for row, sentence in zip(result.sentences, sentences, strict=True):
            for marker in row.citations:
                target = ids.get(marker)
                if target is None:
                    row.bad_citations.append(marker)
                    continue
                chunk = self.index([items[target]])
                support = self._support(self.features([sentence], answer, chunk, question))
                if support[0] < self.config.threshold:
                    row.bad_citations.append(marker)

    def _embedder(self) -> Any:
        if self._embeddings is None:
            self._embeddings = SentenceTransformerEmbeddings()
        return self._embeddings

    def _token_scorer(self) -> TokenScorer:
        if self._scorer is not None and not isinstance(self._scorer, TokenScorer):
            self._scorer = self._scorer()
        assert self._scorer is not None
        return self._scorer

    # -- actions ---------------------------------------------------------------------------------------------
    def apply(self, answer: str, result: GroundingResult) -> str:
        """``answer`` after the configured action on its unsupported sentences."""
        action = self.config.action
        bad = [s for s in result.sentences if not s.supported]
        if result.verdict == "no_context" or not bad:
            return answer
        result.action = action
        if action == "escalate":
            result.escalate = True
            return answer
        pieces: list[str] = []
        cursor = 0
        for s in bad:
            pieces.append(answer[cursor : s.start])
            if action == "annotate":
                pieces.append(s.text + self.config.marker)
            elif action == "abstain":
                text = self.config.abstention.format(sentence=s.text)
                if not "".join(pieces).rstrip().endswith(text):
                    pieces.append(text)
            cursor = s.end
        pieces.append(answer[cursor:])
        out = re.sub(r"[ \t]{2,}", " ", "".join(pieces)).strip()
        return out or self.config.abstention.format(sentence="")

    # -- the Guard hooks -------------------------------------------------------------------------------------
    def check_output(self, text: str, call: GuardCall) -> str:
        with call.timed("grounding.output"):
            result = self.check(answer=text, context=list(call.context), question=call.question)
            out = self.apply(text, result)
            call.report.grounding = result
            if result.action is not None:
                n = sum(not s.supported for s in result.sentences)
                call.report.actions.append(
                    ActionTaken(guard=self.name, stage="output", action=result.action, count=n, detail=result.verdict)
                )
            return out

    def finish_stream(self, text: str, call: GuardCall) -> None:
        self.check_output(text, call)

    def __repr__(self) -> str:
        return f"GroundingGuard(signals={list(self.config.signals)!r}, action={self.config.action!r})"


def _as_items(context: Any) -> list[ContextItem]:
    if context is None:
        return []
    if isinstance(context, str) or not isinstance(context, Sequence):
        return [context]
    return list(context)


def _key(item: ContextItem) -> str:
    return item if isinstance(item, str) else repr(item)


def _chunk_ids(items: Sequence[ContextItem]) -> dict[str, int]:
    """Citation marker -> context item: 1-based positions, Document ids, ``chunk_id`` and source names."""
    ids: dict[str, int] = {}
    for i, item in enumerate(items):
        ids[str(i + 1)] = i
        meta = getattr(item, "metadata", None) or {}
        for value in (getattr(item, "id", None), meta.get("chunk_id"), meta.get("id"), meta.get("source")):
            if value:
                ids.setdefault(str(value), i)
                ids.setdefault(str(value).rsplit("/", 1)[-1], i)
    return ids
