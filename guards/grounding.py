"""``GroundingGuard``: does the retrieved context support each sentence of an answer?

    answer -> sentences (with citation markers) ─┐
    context (strings / Documents / mappings) -> ContextIndex (cached per context)
                                                 ├-> can the sentence be judged? (English, something to check)
                                                 │     no -> "unverified", never "supported"
                                                 ├-> signals per sentence: spans, structured, [lexical, embedding,
                                                 │     cross_encoder, slm]
                                                 └-> sentence model -> P(sentence supported)
    sentence features -> answer features (sums, maxima, shares) -> answer model -> P(answer supported) -> verdict
    unsupported sentences -> action: annotate | drop | abstain | escalate
    citations "[2]" -> is the sentence supported by chunk 2 itself? if not, the citation is flagged

The models are small logistic regressions whose weights are bounded in sign (more unsupported words never raise a
score), fitted with ``benchmarks/grounding_loo.py --fit`` on four development sets (RAGTruth summary and data2txt,
HaluEval QA, QA made from SQuAD 2.0) with each set weighted alike; every design choice was validated with one data
set left out at a time (``benchmarks/results/guards.md``). Scores are probabilities (the reliability table is in
the same file), so the verdict thresholds are 0.5: more likely supported than not. A feature whose signal is switched
off contributes nothing (as if at its training mean), so any subset of signals works with the same weights.
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
    CROSS_ENCODER_FEATURES,
    EMBEDDING_FEATURES,
    LEXICAL_FEATURES,
    SPAN_FEATURES,
    STRUCTURED_FEATURES,
    ContextIndex,
    CrossEncoder,
    cross_encoder_features,
    embedding_features,
    judgeable,
    lexical_features,
    span_features,
    structured_features,
)
from slmkit.guards.report import (
    ActionTaken,
    GroundingAction,
    GroundingResult,
    SentenceStatus,
    SentenceSupport,
    Verdict,
)
from slmkit.guards.slm_scoring import SLM_FEATURES, TokenScorer, slm_features
from slmkit.guards.text import Sentence, citations, split_sentences

__all__ = ["FEATURES", "GroundingGuard", "GroundingGuardConfig", "Signal", "answer_features"]

Signal = Literal["lexical", "spans", "structured", "cross_encoder", "embedding", "slm"]
FEATURES: dict[Signal, tuple[str, ...]] = {
    "lexical": LEXICAL_FEATURES,
    "spans": SPAN_FEATURES,
    "structured": STRUCTURED_FEATURES,
    "cross_encoder": CROSS_ENCODER_FEATURES,
    "embedding": EMBEDDING_FEATURES,
    "slm": SLM_FEATURES,
}
"""Feature names per signal (columns of ``GroundingGuard.features``)."""
DEFAULT_SIGNALS: tuple[Signal, ...] = ("spans", "structured")
UNJUDGED_SCORE = 0.5
"""The score of an answer the guard cannot judge at all: no evidence either way (its verdict is ``unverified``)."""


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


def answer_features(features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Answer-level features from the sentence features of the judged sentences: unsupported words (log of the
    count, share of content words, longest run), unsupported numbers and names (counts, capped at 3), and per
    sentence signal its minimum and mean."""
    out: dict[str, np.ndarray] = {}
    if "unsupported_words" in features:
        content = float(features["content_words"].sum())
        unsupported = float(features["unsupported_words"].sum())
        out["unsupported_log"] = np.array([math.log1p(unsupported)])
        out["unsupported_share"] = np.array([unsupported / max(1.0, content)])
        out["run_max"] = np.array([math.log1p(float(features["unsupported_run"].max()))])
        out["local_share"] = np.array([float(features["local_unsupported"].sum()) / max(1.0, content)])
        out["numbers"] = np.array([min(3.0, float(features["unsupported_numbers"].sum()))])
        out["names"] = np.array([min(3.0, float(features["unsupported_names"].sum()))])
    for name in (*LEXICAL_FEATURES, *STRUCTURED_FEATURES, *CROSS_ENCODER_FEATURES, *EMBEDDING_FEATURES):
        if name in features:
            out[f"{name}.min"] = np.array([float(features[name].min())])
            out[f"{name}.mean"] = np.array([float(features[name].mean())])
    return out


def aggregate(features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The answer features of the SLM models below: mean, minimum, share of sentences below 0.5, and length."""
    out: dict[str, np.ndarray] = {}
    for name, values in features.items():
        out[f"{name}.mean"] = np.array([values.mean()])
        out[f"{name}.min"] = np.array([values.min()])
        out[f"{name}.low"] = np.array([(values < 0.5).mean()])
    if features:
        out["sentences.log"] = np.array([math.log(len(next(iter(features.values()))))])
    return out


# Fitted by `python benchmarks/grounding_loo.py --fit` on all four development sets (3,700 answers), each set weighted
# alike; signs bounded (an unsupported word, number or name never raises support). A weight of 0 is the bound: that
# feature did not help once the others were in.
SENTENCE_MODEL = LogisticModel(
    {
        "content_words": (10.7830, 5.3247, 0.2509),
        "unsupported_words": (3.0421, 2.6481, 0.0000),
        "unsupported_run": (1.8290, 1.6035, -0.2123),
        "local_unsupported": (3.9198, 3.1398, 0.0000),
        "unsupported_numbers": (0.0484, 0.2357, -0.4488),
        "unsupported_names": (0.1477, 0.5262, -0.8110),
        "attribute_consistency": (0.9636, 0.1873, 0.3347),
    },
    1.2580,
)
ANSWER_MODEL = LogisticModel(
    {
        "unsupported_share": (0.1968, 0.2046, -0.9184),
        "unsupported_log": (1.6536, 1.4991, 0.0000),
        "run_max": (0.8948, 0.7670, 0.0000),
        "local_share": (0.2415, 0.2340, 0.0000),
        "numbers": (0.2009, 0.4960, -0.2706),
        "names": (0.5491, 0.9003, -0.2656),
        "attribute_consistency.min": (0.8851, 0.3189, 0.1352),
    },
    0.2511,
)
# With the cross-encoder: fitted on the seeded sample that has its feature (150 + 60 RAGTruth, 294 HaluEval, 300
# SQuAD answers). Bounded to be non-negative, its weights came out 0: it adds nothing on held-out sets, and the
# guard falls back on the spans (see benchmarks/results/guards.md).
SENTENCE_MODEL_CE = LogisticModel(
    {
        "content_words": (10.8501, 6.4533, 0.2586),
        "unsupported_words": (2.3479, 2.6704, 0.0000),
        "unsupported_run": (1.4253, 1.6069, -0.2350),
        "local_unsupported": (3.0415, 3.2119, 0.0000),
        "unsupported_numbers": (0.0594, 0.2664, -0.5353),
        "unsupported_names": (0.1636, 0.5671, -0.8678),
        "attribute_consistency": (0.9774, 0.1487, 0.2504),
        "relevance": (2.8259, 5.8113, 0.0000),
    },
    1.3290,
)
ANSWER_MODEL_CE = LogisticModel(
    {
        "unsupported_share": (0.1428, 0.2049, -0.8514),
        "unsupported_log": (1.0207, 1.2719, 0.0000),
        "run_max": (0.6230, 0.7212, 0.0000),
        "local_share": (0.1674, 0.2248, 0.0000),
        "numbers": (0.1549, 0.4363, -0.1998),
        "names": (0.3829, 0.7986, -0.2990),
        "attribute_consistency.min": (0.9579, 0.2009, 0.1189),
        "relevance.min": (1.9436, 6.8844, 0.0000),
        "relevance.mean": (4.1042, 4.8465, 0.0000),
    },
    0.6058,
)

# The earlier models with the SLM signal (SmolLM2-135M) over ``aggregate``, fitted on a seeded RAGTruth sample of
# `benchmarks/grounding.py --slm 10` (the signal costs 20-35 s per answer on the shared 2-core machine).
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
    "cross_encoder": (SENTENCE_MODEL_CE, ANSWER_MODEL_CE),
    "slm": (SENTENCE_MODEL_SLM, ANSWER_MODEL_SLM),
}
"""(sentence model, answer model): "slm" (over ``aggregate``) when the SLM signal is on, "cross_encoder" when that
signal is on, else "default" (both over ``answer_features``)."""


class GroundingGuardConfig(SlmkitConfig):
    """Settings of a :class:`GroundingGuard`; every field has the value we recommend."""

    signals: tuple[Signal, ...] = DEFAULT_SIGNALS
    """Signals to combine. The default (unsupported spans: words, numbers and names the context and the question
    lack; structured attributes) needs no model and costs a few milliseconds. ``"cross_encoder"`` adds the packaged
    MS MARCO cross-encoder's relevance of each sentence to its best context sentence (its own weights; tens of
    milliseconds per sentence on CPU). ``"embedding"`` (MiniLM similarity) and ``"lexical"`` (word-coverage shares)
    are kept for callers who ask for them; neither helped on held-out sets. ``"slm"`` also needs a scorer
    (``GroundingGuard(scorer=...)``) and is slow."""
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    """A sentence whose support (a calibrated probability) is below this is unsupported."""
    answer_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    """An answer whose score (a calibrated probability) is below this is not ``supported``."""
    action: GroundingAction = "annotate"
    """What to do with unsupported sentences (never with unverified ones)."""
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
            result.score, result.verdict, [(s.status, s.score) for s in result.sentences]

    ``embeddings``: any LangChain ``Embeddings`` for the ``embedding`` signal (default: the packaged
    all-MiniLM-L6-v2, loaded on first use). ``cross_encoder``: a :class:`CrossEncoder` (default: the packaged
    ms-marco-MiniLM-L-12-v2, loaded on first use). ``scorer``: a :class:`TokenScorer` (or a function returning one,
    called on first use) for the ``slm`` signal, e.g. ``slmkit.agent.grounding_scorer.local_grounding_scorer()``.
    """

    name = "grounding"

    def __init__(
        self,
        config: GroundingGuardConfig | None = None,
        *,
        embeddings: Any = None,
        scorer: TokenScorer | Callable[[], TokenScorer] | None = None,
        cross_encoder: CrossEncoder | None = None,
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
        self._cross_encoder = cross_encoder
        self._indexes: dict[int, ContextIndex] = {}
        self._lock = threading.Lock()

    # -- scoring ---------------------------------------------------------------------------------------------
    def check(
        self, *, answer: str, context: str | ContextItem | Sequence[ContextItem], question: str | None = None
    ) -> GroundingResult:
        """Per-sentence support and the overall verdict of ``answer`` against ``context``."""
        items = _as_items(context)
        sentences = split_sentences(answer)
        threshold = self.config.answer_threshold
        if not items or not any(str(i).strip() for i in items):
            return GroundingResult(score=0.0, verdict="no_context", threshold=threshold)
        index = self.index(items)
        status = [judgeable(s.text) if index.english else "language" for s in sentences]
        judged = [s for s, why in zip(sentences, status, strict=True) if why == ""]
        if not judged:
            rows = [_unverified_row(i, s) for i, s in enumerate(sentences)]
            return GroundingResult(
                score=UNJUDGED_SCORE, verdict="unverified", threshold=threshold, sentences=rows,
                signals=list(self.config.signals),
            )  # fmt: skip
        features = self.features(judged, answer, index, question)
        supports = self._support(features)
        result = self._result(sentences, status, judged, supports, features)
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
            elif signal == "spans":
                values = span_features(sentences, index, question)
            elif signal == "structured":
                values = structured_features(sentences, index)
            elif signal == "cross_encoder":
                values = cross_encoder_features(sentences, index, self._encoder())
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
        signals = self.config.signals
        return MODELS["slm" if "slm" in signals else "cross_encoder" if "cross_encoder" in signals else "default"]

    def answer_score(self, features: dict[str, np.ndarray]) -> float:
        """P(the answer is supported) from the sentence features of its judged sentences."""
        aggregated = aggregate(features) if "slm" in self.config.signals else answer_features(features)
        return float(self._models()[1].probability(aggregated)[0])

    def _result(
        self,
        sentences: Sequence[Sentence],
        status: Sequence[str],
        judged: Sequence[Sentence],
        supports: np.ndarray,
        features: dict[str, np.ndarray],
    ) -> GroundingResult:
        threshold = self.config.threshold
        score = self.answer_score(features)
        position = {id(s): j for j, s in enumerate(judged)}
        rows = []
        for i, s in enumerate(sentences):
            j = position.get(id(s))
            if j is None:
                rows.append(_unverified_row(i, s))
                continue
            p = float(supports[j])
            row_status: SentenceStatus = "supported" if p >= threshold else "unsupported"
            rows.append(
                SentenceSupport(
                    index=i,
                    start=s.start,
                    end=s.end,
                    text=s.text,
                    score=round(p, 4),
                    supported=row_status == "supported",
                    status=row_status,
                    signals={name: round(float(v[j]), 4) for name, v in features.items()},
                    citations=citations(s.text),
                )
            )
        n_supported = sum(r.status == "supported" for r in rows)
        n_unsupported = sum(r.status == "unsupported" for r in rows)
        verdict: Verdict
        if score >= self.config.answer_threshold:
            # a sentence in a language the guard does not read may say anything: the answer is not "supported"
            verdict = "unverified" if "language" in status else "supported"
        elif n_supported and n_unsupported:
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
                if row.status == "unverified":
                    continue
                chunk = self.index([items[target]])
                support = self._support(self.features([sentence], answer, chunk, question))
                if support[0] < self.config.threshold:
                    row.bad_citations.append(marker)

    def _embedder(self) -> Any:
        if self._embeddings is None:
            self._embeddings = SentenceTransformerEmbeddings()
        return self._embeddings

    def _encoder(self) -> CrossEncoder:
        if self._cross_encoder is None:
            self._cross_encoder = CrossEncoder()
        return self._cross_encoder

    def _token_scorer(self) -> TokenScorer:
        if self._scorer is not None and not isinstance(self._scorer, TokenScorer):
            self._scorer = self._scorer()
        assert self._scorer is not None
        return self._scorer

    # -- actions ---------------------------------------------------------------------------------------------
    def apply(self, answer: str, result: GroundingResult) -> str:
        """``answer`` after the configured action on its unsupported sentences."""
        action = self.config.action
        bad = [s for s in result.sentences if s.status == "unsupported"]
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
                n = sum(s.status == "unsupported" for s in result.sentences)
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


def _unverified_row(i: int, s: Sentence) -> SentenceSupport:
    """A sentence the guard cannot judge: no score of its own beyond "no evidence either way"."""
    return SentenceSupport(
        index=i, start=s.start, end=s.end, text=s.text, score=UNJUDGED_SCORE, supported=False, status="unverified",
        citations=citations(s.text),
    )  # fmt: skip
