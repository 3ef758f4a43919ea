"""Per-model answering profiles: the settings that make each catalogue model answer well over documents.

A 135M model and a 1.5B model need different prompts: the tiny one copies the right sentence from a few short
excerpts and is lost in whole pages; the larger ones read whole passages, answer in words, and can say when the
sources do not hold the answer. Each catalogue model carries a :class:`ModelProfile`, tuned and measured on the
SQuAD 2.0 document-Q&A benchmark (``benchmarks/qa_squad.py``; figures in ``benchmarks/RESULTS.md``).

    AssistantConfig(model=ID) -> every field the caller did not set comes from ID's profile
                                 (``AssistantConfig.with_profile``); explicit settings always win
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from slmkit.agent.decline import DeclineRule
from slmkit.core.config import SlmkitConfig

__all__ = ["PROFILE_FIELDS", "ExcerptRanker", "ModelProfile", "ProfileScore"]

ExcerptRanker = Literal["overlap", "cross-encoder"]
"""How a passage's sentences are chosen for the prompt: by words shared with the question (free), or by the
packaged MS MARCO cross-encoder (about 10 ms per sentence on a laptop CPU; the gold sentence is kept more often)."""

TINY_INSTRUCTIONS = "Answer the question with one sentence copied from the sources. Cite the source number like [1]."
"""Compared on the example documents with politer prompts, with the sources in the system message, and with an
"if the sources do not answer it, say ..." clause (which made SmolLM2-135M ramble about "the documents"): this
one, with the sources next to the question, got the most answers right."""

READER_INSTRUCTIONS = (
    "Answer the question from the sources only, in a few words and one sentence at most, and cite the source "
    "number like [1]. If the sources do not answer the question, reply: The documents do not say."
)
"""For models of 0.5B parameters and more, which follow an "if not, say ..." clause (see ``benchmarks/RESULTS.md``)."""


class ProfileScore(SlmkitConfig):
    """A profile's figures on the document-Q&A benchmark on this kind of machine (what ``models list`` shows)."""

    balanced: float
    answered_correct: float
    declined_correctly: float
    false_decline: float
    seconds_per_question: float
    first_token_s: float
    questions: int
    command: str = ""


class ModelProfile(SlmkitConfig):
    """Answering settings of one model (the assistant's fields of the same names)."""

    k: int = Field(default=3, ge=1)
    group_by_source: bool = True
    passage_chars: int = Field(default=400, ge=40)
    excerpt_ranker: ExcerptRanker = "overlap"
    max_tokens: int = Field(default=80, ge=1)
    max_sentences: int | None = Field(default=2, ge=1)
    instructions: str = TINY_INSTRUCTIONS
    refusal: str = "The documents do not say."
    claims_as_questions: bool = True
    min_relevance: float | None = Field(default=0.3, ge=-1.0, le=1.0)
    rerank_top_n: int | None = Field(default=None, ge=1)
    decline: DeclineRule | None = None
    escalate_below: float | None = Field(default=None, ge=0.0, le=1.0)
    """The cascade's operating point for this model as the local one (``RemoteModelConfig(escalate_below="auto")``):
    answers whose ``answer_score`` is below it go to the remote model (not an assistant setting)."""
    measured: ProfileScore | None = None
    """Benchmark figures of this profile (not a setting)."""


PROFILE_FIELDS = tuple(name for name in ModelProfile.model_fields if name not in ("measured", "escalate_below"))
"""The fields a profile sets on an ``AssistantConfig``."""
