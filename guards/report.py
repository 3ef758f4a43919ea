"""What guards found and did, as pydantic objects that travel in ``response_metadata['guard_report']``.

Each guard appends to one :class:`GuardReport` per call: PII findings (with spans and types), the actions taken on
them, the grounding result (per-sentence support, overall score, verdict) and how long each guard took. Reports
never hold the PII values themselves, only spans, types and scores, so they can be logged and traced safely.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

__all__ = [
    "Action",
    "ActionTaken",
    "GroundingAction",
    "GroundingResult",
    "GuardReport",
    "PIIFinding",
    "SentenceStatus",
    "SentenceSupport",
    "Stage",
    "Verdict",
]

Action = Literal["block", "redact", "mask", "hash", "pseudonymize", "keep"]
"""What a PII guard does with a finding; ``keep`` only reports it."""
GroundingAction = Literal["annotate", "drop", "abstain", "escalate"]
"""What a grounding guard does with unsupported sentences."""
Stage = Literal["input", "output"]
Verdict = Literal["supported", "partially_supported", "unsupported", "unverified", "no_context"]
"""``unverified``: the guard cannot judge the answer (e.g. it is not in English, or says nothing it could check); such
an answer is never reported as supported."""
SentenceStatus = Literal["supported", "unsupported", "unverified"]


class PIIFinding(BaseModel):
    """One piece of PII in a text: where it is, what it is, and how sure the detector is."""

    start: int
    end: int
    entity_type: str
    score: float
    recognizer: str = ""
    """The detector that found it (a Presidio recognizer or one of ours)."""


class ActionTaken(BaseModel):
    """What a guard did, without the value it acted on."""

    guard: str
    stage: Stage
    action: str
    entity_type: str = ""
    count: int = 1
    detail: str = ""


class SentenceSupport(BaseModel):
    """How well the context supports one sentence of an answer."""

    index: int
    start: int
    end: int
    text: str
    score: float
    """Support in [0, 1]: the estimated probability that the sentence is supported by the context."""
    supported: bool
    status: SentenceStatus | None = None
    """``supported`` / ``unsupported`` as ``supported`` says, or ``unverified``: the guard could not judge the sentence
    (nothing in it to check, or not a language it reads); an unverified sentence is never ``supported``."""
    signals: dict[str, float] = {}
    """Each signal's own support value in [0, 1] (1 = supported)."""
    citations: list[str] = []
    """Citation markers found in the sentence, e.g. ``["1", "doc-7"]``."""
    bad_citations: list[str] = []
    """Citations whose chunk does not support the sentence (or does not exist)."""

    @model_validator(mode="after")
    def _status(self) -> SentenceSupport:
        if self.status is None:
            self.status = "supported" if self.supported else "unsupported"
        else:
            self.supported = self.status == "supported"
        return self


class GroundingResult(BaseModel):
    """Per-sentence support and the overall verdict of a grounding check."""

    score: float
    """The answer's overall support in [0, 1] (1 = fully supported)."""
    verdict: Verdict
    threshold: float
    sentences: list[SentenceSupport] = []
    signals: list[str] = []
    """The signals that were combined, e.g. ``["lexical", "embedding"]``."""
    escalate: bool = False
    """True when the answer should go to a stronger model (the router reads this)."""
    action: GroundingAction | None = None
    """The action applied to the answer, if any sentence was unsupported."""


class GuardReport(BaseModel):
    """Everything the guards of one call found and did; found in ``response_metadata['guard_report']``."""

    findings: dict[Stage, list[PIIFinding]] = Field(default_factory=dict)
    actions: list[ActionTaken] = []
    grounding: GroundingResult | None = None
    timings_ms: dict[str, float] = {}
    """Milliseconds per guard and stage, e.g. ``{"pii.input": 12.5, "grounding.output": 140.0}``."""
    blocked: bool = False

    def add_findings(self, stage: Stage, findings: list[PIIFinding]) -> None:
        self.findings.setdefault(stage, []).extend(findings)

    def add_timing(self, key: str, ms: float) -> None:
        self.timings_ms[key] = round(self.timings_ms.get(key, 0.0) + ms, 3)

    @property
    def escalate(self) -> bool:
        """True when a guard asks the router to send the request to a stronger model."""
        return self.grounding is not None and self.grounding.escalate
