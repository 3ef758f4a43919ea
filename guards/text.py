"""Plain-text helpers for grounding: sentences with offsets, content words, numbers, citation markers.

Regular expressions plus the Snowball English stemmer (PyStemmer, the one BM25 uses), so the lexical signal costs
microseconds and a word matches its inflections the way it does in retrieval.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from slmkit.core.stemming import stem_words

__all__ = [
    "STOPWORDS",
    "Sentence",
    "citations",
    "content_words",
    "numbers",
    "split_sentences",
    "stem",
    "words",
]

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[A-Z0-9\"'(\[])|\n\s*\n|\n(?=\s*(?:[-*•]|\d+[.)])\s)")
_ABBREVIATIONS = re.compile(r"\b(?:Mr|Mrs|Ms|Dr|Prof|St|Jr|Sr|vs|etc|e\.g|i\.e|U\.S|No|Inc|Ltd|Co)\.$", re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?|\d+(?:[.,:]\d+)*")
_CITATION = re.compile(r"\[(?:(?:source|doc|chunk)\s*:\s*)?([\w.:#/\-]+(?:\s*,\s*[\w.:#/\-]+)*)\]", re.IGNORECASE)
_NUMBER_NAMES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen "
    "eighteen nineteen twenty"
)
_NUMBER_WORDS = {word: str(i) for i, word in enumerate(re.findall(r"\w+", _NUMBER_NAMES))}
_STOPWORD_LINES = (
    "a an the and or but if of to in on at by for with from as is are was were be been being this that these those",
    "it its they them their he she his her we our you your i me my not no so than then there here which who whom",
    "what when where why how all any both each few more most other some such only own same too very can will just",
    "do does did has have had having about above after again against below between into through during before",
    "under over up down out off once further also would could should may might must shall one",
)
STOPWORDS = frozenset(word for line in _STOPWORD_LINES for word in line.split(" "))


@dataclass(frozen=True)
class Sentence:
    """A sentence of an answer and where it is."""

    text: str
    start: int
    end: int


def split_sentences(text: str) -> list[Sentence]:
    """Sentences with character offsets; abbreviations such as "Dr." do not end a sentence."""
    out: list[Sentence] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        if _ABBREVIATIONS.search(text[start : match.start()]):
            continue
        _append(out, text, start, match.start())
        start = match.end()
    _append(out, text, start, len(text))
    return out


def _append(out: list[Sentence], text: str, start: int, end: int) -> None:
    piece = text[start:end]
    stripped = piece.strip()
    if stripped:
        offset = start + piece.index(stripped)
        out.append(Sentence(stripped, offset, offset + len(stripped)))


def words(text: str) -> list[str]:
    return _WORD.findall(text)


@functools.lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """Snowball stem of the lower-cased word: "outcome", "outcomes" -> "outcom"; "increase", "increased" ->
    "increas". A suffix-stripper without the Snowball rules matched "outcomes" but not "outcome", which cost
    citations whose source used the other form."""
    return stem_words([word.lower()])[0]


def content_words(text: str) -> list[str]:
    """Stemmed words that carry meaning (no stopwords, no numbers)."""
    return [stem(w) for w in words(text) if not w[0].isdigit() and w.lower() not in STOPWORDS]


def numbers(text: str) -> list[str]:
    """Numbers in a normal form: "1,200" -> "1200", "5.0" -> "5", "five" -> "5", "7:30 pm" -> "19:30"."""
    out = [_clock(m) for m in _CLOCK.finditer(text)]
    for w in words(_CLOCK.sub(" ", text)):
        if w[0].isdigit():
            out.append(_normal_number(w))
        elif w.lower() in _NUMBER_WORDS:
            out.append(_NUMBER_WORDS[w.lower()])
    return out


_CLOCK = re.compile(r"\b(\d{1,2})(?::(\d{2}))?\s*([ap])\.?\s?m\b\.?", re.IGNORECASE)


def _clock(match: re.Match[str]) -> str:
    hours, minutes = int(match.group(1)) % 12, int(match.group(2) or 0)
    return f"{hours + 12 if match.group(3).lower() == 'p' else hours}:{minutes}"


def _normal_number(token: str) -> str:
    if ":" in token:
        parts = token.split(":")
        if all(part.isdigit() for part in parts):  # a time of day, "07:30" or "7:30:15" -> "7:30"
            return f"{int(parts[0])}:{int(parts[1])}"
        return ":".join(_normal_number(part) for part in parts)  # a ratio, "1:4,000" -> "1:4000"
    plain = token.replace(",", "")
    try:
        value = float(plain)
    except ValueError:
        return plain
    return str(int(value)) if value.is_integer() else str(value)


def citations(text: str) -> list[str]:
    """Citation markers in ``text``: "[1]", "[2, 3]", "[doc-7]", "[source: a.pdf#p3]" -> ["1", "2", "3", ...]."""
    found: list[str] = []
    for match in _CITATION.finditer(text):
        found.extend(part.strip() for part in match.group(1).split(",") if part.strip())
    return found
