"""Which retrieved passages an answer rests on, decided without trusting the model to cite.

A 135M model cites a wrong number, or none, as often as a right one, so citations are computed:

    answer -> numeric markers taken out ("[2]", "[1, 3]") -> sentences
    each sentence -> its terms (stemmed content words and numbers) -> coverage by each passage
                     (the share of the sentence's terms the passage contains)
                  -> the passages the model named for it, if they cover it (>= min_support: the model's marker is
                     valid)
                  -> else, if it only replies to the question (restates it, or says yes or no): the highest-ranked
                     passage that covers the question (the retriever ranked them by relevance to this very
                     question, which picks the source a reply rests on better than word overlap does)
                  -> else the best-covering passage (the higher-ranked one on a tie) if it covers it
                  -> else, for a bare answer too short to claim anything alone ("28" to "How many days ...?"): the
                     highest-ranked passage holding all of it that also covers the question, else none
    -> the answer with the kept markers at the end of their sentences, and the cited passages in order of first use

Only what the model saw counts: pass the excerpts from the prompt, not the whole passages.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from slmkit.guards.text import content_words, numbers, split_sentences, stem, words

__all__ = ["Attribution", "SentenceCap", "attribute", "coverage", "strip_markers", "terms"]

_MARKER = re.compile(r"\s*\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
_END = re.compile(r"[.!?:;]+[\"')\]]*$")


_META = frozenset(
    stem(w)
    for w in [
        "answer",
        "answers",
        "yes",
        "true",
        "false",
        "correct",
        "based",
        "provided",
        "source",
        "sources",
        "document",
        "documents",
        "text",
        "question",
        "claim",
        "according",
        "states",
        "stated",
        "says",
        "mentioned",
        "given",
    ]
)
"""Words about answering rather than about the subject ("Based on the provided sources, it is true that ...")."""


def terms(text: str) -> set[str]:
    """Stemmed content words and normalised numbers: what a sentence claims, ignoring function and meta words."""
    return (set(content_words(text)) | set(numbers(text))) - _META


def coverage(sentence_terms: set[str], passage_terms: set[str]) -> float:
    """Share of the sentence's terms found in the passage (0 for a sentence without terms)."""
    if not sentence_terms:
        return 0.0
    return len(sentence_terms & passage_terms) / len(sentence_terms)


@dataclass(frozen=True)
class Attribution:
    """The answer with checked markers, and which passage (0-based) each marker points at."""

    text: str
    cited: list[int]
    """Passage indexes in order of first use; marker = index + 1."""
    support: dict[int, float]
    """Best coverage each cited passage gave a sentence."""
    removed_markers: int = 0
    """Markers the model wrote that did not hold up (out of range, or the passage does not cover the sentence)."""


def attribute(
    answer: str,
    passages: Sequence[str],
    *,
    question: str | None = None,
    min_support: float = 0.5,
    min_terms: int = 2,
) -> Attribution:
    """Cite, for each sentence of ``answer``, the passage that covers it (see the module docstring).

    ``min_support``: coverage a passage needs to support a sentence; ``min_terms``: sentences with fewer terms
    cite nothing on their own, since one shared word proves nothing. ``question``: a sentence that only replies
    to it (restates it, "it is true that <question>", or says yes or no, "The answer is yes.") cites the
    highest-ranked passage that covers the question.
    """
    passage_terms = [terms(p) for p in passages]
    asked = terms(question) if question else set()
    asked_scores = [coverage(asked, p) for p in passage_terms]
    clean, written = _strip_markers(answer)
    pieces: list[str] = []
    cited: list[int] = []
    support: dict[int, float] = {}
    removed = 0
    cursor = 0
    for sentence in split_sentences(clean):
        named = [n for at, ns in written.items() if sentence.start <= at <= sentence.end for n in ns]
        own = terms(sentence.text)
        scores = [coverage(own, p) for p in passage_terms]
        chosen: list[int] = []
        if len(own) >= min_terms:
            chosen = [n - 1 for n in dict.fromkeys(named) if 0 < n <= len(scores) and scores[n - 1] >= min_support]
        if not chosen and asked and _replies(sentence.text, own, asked, min_terms):
            chosen = _about_question(asked_scores, min_support)
        if not chosen and len(own) >= min_terms and scores:
            best = max(range(len(scores)), key=lambda i: (scores[i], -i))
            if scores[best] >= min_support:
                chosen = [best]
        if not chosen and asked and 0 < len(own) < min_terms and own - asked:
            chosen = _holds_short_answer(scores, asked_scores, min_support)
        removed += len(set(named)) - len({n for n in named if n - 1 in chosen})
        for i in chosen:
            if i not in cited:
                cited.append(i)
            support[i] = max(support.get(i, 0.0), round(scores[i], 4))
        pieces.append(clean[cursor : sentence.start])
        pieces.append(_with_markers(sentence.text, [i + 1 for i in chosen]))
        cursor = sentence.end
    pieces.append(clean[cursor:])
    return Attribution(text="".join(pieces).strip(), cited=cited, support=support, removed_markers=removed)


_NEW_TERMS = 3
_NEW_SHARE = 1 / 3
"""A sentence adding fewer terms than ``_NEW_TERMS`` to the question, or fewer than ``_NEW_SHARE`` of its own
terms, restates it: a long question restated picks up a few words ("compared with", "in patients")."""
_REPLY_WORDS = frozenset({"yes", "no", "not", "true", "false", "correct", "incorrect"})


def _replies(sentence: str, own: set[str], asked: set[str], min_terms: int) -> bool:
    """Whether a sentence only replies to the question: it restates it ("it is true that <question>"), or it is
    too short to claim anything but says yes or no ("The answer is yes.")."""
    if len(own) >= min_terms:
        return len(own - asked) < max(_NEW_TERMS, _NEW_SHARE * len(own))
    return any(w.lower() in _REPLY_WORDS for w in words(sentence))


def _about_question(scores: list[float], min_support: float) -> list[int]:
    """For a reply: the highest-ranked passage that covers at least half as much of the question as a sentence
    needs (the retriever ranked the passages by relevance to this very question)."""
    return next(([i] for i, score in enumerate(scores) if score >= min_support / 2), [])


def _holds_short_answer(scores: list[float], asked_scores: list[float], min_support: float) -> list[int]:
    """For a bare answer ("28", "1857"): the highest-ranked passage that holds all of it and covers the question;
    the answer alone proves nothing, the answer beside the question's words does."""
    return next(
        (
            [i]
            for i, (own, asked) in enumerate(zip(scores, asked_scores, strict=True))
            if own == 1.0 and asked >= min_support
        ),
        [],
    )


def strip_markers(text: str) -> str:
    """``text`` without numeric citation markers (e.g. to keep an answer in conversation memory)."""
    return _MARKER.sub("", text)


def _strip_markers(answer: str) -> tuple[str, dict[int, list[int]]]:
    """The answer without numeric markers, and the markers found, keyed by where they stood in the clean text
    (a marker just before a full stop counts as standing after it, so it belongs to that sentence)."""
    out: list[str] = []
    found: dict[int, list[int]] = {}
    cursor = 0
    length = 0
    for match in _MARKER.finditer(answer):
        before = answer[cursor : match.start()]
        out.append(before)
        length += len(before)
        numbers_ = [int(n) for n in match.group(1).split(",")]
        rest = answer[match.end() :]
        stop = re.match(r"[.!?]+", rest)
        # "... warranty [1]." -> the marker belongs before the full stop, i.e. to the sentence ending after it
        position = length + (len(stop.group(0)) if stop else 0)
        found.setdefault(position, []).extend(numbers_)
        cursor = match.end()
    out.append(answer[cursor:])
    return "".join(out), found


def _with_markers(sentence: str, markers: list[int]) -> str:
    if not markers:
        return sentence
    tag = " " + "".join(f"[{m}]" for m in markers)
    end = _END.search(sentence)
    if end is None:
        return sentence + tag
    return sentence[: end.start()] + tag + sentence[end.start() :]


class SentenceCap:
    """Lets streamed text through until ``limit`` sentences of at least ``min_words`` words are complete (None:
    no limit). Shorter pieces ("1.", "The answer is:") do not count against the limit.

    What follows the last allowed sentence is held back until it is either a sentence of its own (then the answer
    ends before it) or the stream ends (``flush``); trailing whitespace is always held back. So no word of a
    sentence past the limit is ever shown.
    """

    def __init__(self, limit: int | None, min_words: int = 4) -> None:
        self.limit = limit
        self.min_words = min_words
        self.text = ""
        self.done = False
        self._shown = 0

    def feed(self, piece: str) -> str:
        """The part of the text that may be shown now ("" once the limit is reached)."""
        if self.done:
            return ""
        self.text += piece
        end = len(self.text.rstrip())
        if self.limit is not None:
            counted = [s for s in split_sentences(self.text) if len(words(s.text)) >= self.min_words]
            if len(counted) > self.limit:
                self.text = self.text[: counted[self.limit - 1].end]
                self.done = True
                end = len(self.text)
            elif len(counted) == self.limit:
                end = counted[-1].end
        return self._show(end)

    def flush(self) -> str:
        """At the end of the stream: whatever was held back after the last sentence (a short fragment)."""
        if self.done:
            return ""
        self.text = self.text.rstrip()
        return self._show(len(self.text))

    def _show(self, end: int) -> str:
        out = self.text[self._shown : end] if end > self._shown else ""
        self._shown = max(self._shown, end)
        return out
