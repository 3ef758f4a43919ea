"""Support signals for grounding: how well the context backs each sentence of an answer, without an NLI model.

Each signal turns (answer sentences, context) into a few numbers per sentence; ``GroundingGuard`` combines them.

    lexical     share of the sentence's content words found in the context, and in the few context sentences
                that overlap it most (a recombined fact borrows words from all over); numbers and names found
    structured  for structured context (a mapping, or a JSON object as text): a sentence that affirms an
                attribute whose value is false, denies one that is true, or asserts one that is null
    embedding   cosine similarity of the sentence to its closest context sentence (any LangChain ``Embeddings``;
                the packaged all-MiniLM-L6-v2 by default)
    slm         see ``slm_scoring``: how much more likely the local SLM finds the sentence with the context

Context arrives as strings, ``Document``s or mappings; :class:`ContextIndex` prepares it once (sentences, word
sets, attributes, embeddings), so checking several answers against the same context costs little.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from slmkit.core.embeddings import embed_texts
from slmkit.guards.base import ContextItem, context_text
from slmkit.guards.text import STOPWORDS, Sentence, content_words, numbers, split_sentences, stem, words

__all__ = [
    "SPAN_FEATURES",
    "ContextIndex",
    "CrossEncoder",
    "cross_encoder_features",
    "embedding_features",
    "is_english",
    "judgeable",
    "lexical_features",
    "span_features",
    "structured_features",
]

_LOCAL_TOP_K = 3
_NEGATION = re.compile(
    r"\b(?:not|no|never|nor|without|lacks?|lacking|neither|none|cannot|isn't|aren't|doesn't|don't|didn't|wasn't|"
    r"won't|n't)\b",
    re.IGNORECASE,
)
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|[_\-.\s]+")


@dataclass
class _Attribute:
    words: frozenset[str]
    value: bool | None


@dataclass
class ContextIndex:
    """A context prepared for checking: text, sentences, word sets, structured attributes, embeddings."""

    items: list[str]
    """Each context item as text (mappings flattened to ``key: value`` lines)."""
    sentences: list[str]
    sentence_item: list[int]
    """For each context sentence, the index of the item it comes from."""
    vocabulary: frozenset[str]
    numbers: frozenset[str]
    sentence_words: list[frozenset[str]]
    attributes: list[_Attribute]
    english: bool = True
    """Whether the context reads as English (else the guard cannot judge answers against it)."""
    embeddings: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def build(cls, context: Sequence[ContextItem]) -> ContextIndex:
        items: list[str] = []
        attributes: list[_Attribute] = []
        for item in context:
            structured = _as_mapping(item)
            if structured is not None:
                attributes.extend(_attributes(structured))
            items.append(context_text(item if structured is None else structured))
        sentences: list[str] = []
        owner: list[int] = []
        for i, text in enumerate(items):
            for line in text.splitlines():
                for sentence in split_sentences(line):
                    sentences.append(sentence.text)
                    owner.append(i)
        full = "\n".join(items)
        return cls(
            items=items,
            sentences=sentences,
            sentence_item=owner,
            vocabulary=frozenset(content_words(full)),
            numbers=frozenset(numbers(full)),
            sentence_words=[frozenset(content_words(s)) for s in sentences],
            attributes=attributes,
            english=is_english(full),
        )

    def sentence_embeddings(self, embeddings: Any) -> np.ndarray:
        with self._lock:
            if self.embeddings is None:
                self.embeddings = embed_texts(embeddings, self.sentences or [""])
            return np.asarray(self.embeddings)


# -- what the guard can judge -----------------------------------------------------------------------------------
def _wordlist(text: str) -> list[str]:
    return text.split()


_FOREIGN = frozenset(
    _wordlist(
        "der die das und ist nicht ein eine mit auf sich le la les est et des une pour dans qui pas el los "
        "las que y es una por con para del il che di per non sono della het een van en niet och att är som "
        "não com uma para em ao"
    )
)
"""Function words of other Latin-script languages (German, French, Spanish, Italian, Dutch, Swedish, Portuguese)."""


_CONVERSATION = frozenset(
    stem(w)
    for w in _wordlist(
        "sure certainly okay ok yes thank thanks hope help helps glad happy welcome let know please hello hi"
    )
)


def is_english(text: str) -> bool:
    """Whether ``text`` reads as English: mostly Latin letters, and no more function words of other Latin-script
    languages than English ones (lists and key-value records without function words pass). Stemming, stop words and
    the cross-encoder are English-only."""
    letters = [c for c in text[:20000] if c.isalpha()]
    if not letters:
        return True
    latin = sum(c.isascii() or "\u00c0" <= c <= "\u024f" for c in letters)
    if latin / len(letters) < 0.7:
        return False
    found = [w.lower() for w in words(text[:20000]) if not w[0].isdigit()]
    if len(found) < 4:
        return True
    english = sum(w in STOPWORDS for w in found)
    foreign = sum(w in _FOREIGN and w not in STOPWORDS for w in found)
    return foreign < 2 or english >= foreign


def judgeable(sentence: str) -> str:
    """Why the guard cannot judge ``sentence``: "" (it can), "empty" (no content word or number to check, as in
    "Sure!"), or "language" (not English)."""
    if not is_english(sentence):
        return "language"
    if not numbers(sentence) and all(w in _CONVERSATION for w in content_words(sentence)):
        return "empty"
    return ""


# -- lexical --------------------------------------------------------------------------------------------------------
LEXICAL_FEATURES = ("coverage", "local_coverage", "number_support", "name_support")


def lexical_features(sentences: Sequence[Sentence], index: ContextIndex) -> np.ndarray:
    """Per sentence: content-word coverage (whole context, and the best-overlapping context sentences), share of
    numbers found, share of capitalised names found. 1 = everything found."""
    rows = []
    for sentence in sentences:
        content = content_words(sentence.text)
        found = [w in index.vocabulary for w in content]
        coverage = float(np.mean(found)) if content else 1.0
        unique = set(content)
        overlap = np.array([len(unique & s) for s in index.sentence_words])
        best = np.argsort(-overlap, kind="stable")[:_LOCAL_TOP_K]
        local = frozenset().union(*(index.sentence_words[i] for i in best))
        local_coverage = float(np.mean([w in local for w in content])) if content else 1.0
        nums = numbers(sentence.text)
        number_support = float(np.mean([n in index.numbers for n in nums])) if nums else 1.0
        # a capitalised stop word ("the IT desk", "the WHO") is never in the vocabulary of content words
        names = [stem(w) for w in words(sentence.text)[1:] if w[0].isupper() and w.lower() not in STOPWORDS]
        name_support = float(np.mean([n in index.vocabulary for n in names])) if names else 1.0
        rows.append((coverage, local_coverage, number_support, name_support))
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(LEXICAL_FEATURES))


# -- spans ----------------------------------------------------------------------------------------------------------
SPAN_FEATURES = (
    "content_words",
    "unsupported_words",
    "unsupported_run",
    "local_unsupported",
    "unsupported_numbers",
    "unsupported_names",
)
_ANSWER_WORDS = frozenset(
    stem(w)
    for w in _wordlist(
        "passage passages text context document documents source sources article mention mentioned mentions "
        "provide provided provides information state states stated according based given answer question "
        "specific specifically detail details however note summary summarize summarized overall say says said "
        "unable unfortunately sorry sufficient insufficient explicitly necessary"
    )
)
"""Words an answer uses to talk about the context ("based on the passages, ..."): never unsupported."""
_MARKER = re.compile(r"\[[^\[\]\n]{1,60}\]")


def span_features(sentences: Sequence[Sentence], index: ContextIndex, question: str | None = None) -> np.ndarray:
    """Per sentence, counts: content words, those absent from the context and the question, the longest run of
    absent ones in a row, those absent from the context sentences that overlap the sentence most, numbers and
    capitalised names absent from the context and the question."""
    asked = frozenset(content_words(question)) if question else frozenset()
    asked_numbers = frozenset(numbers(question)) if question else frozenset()
    known = index.vocabulary | asked | _ANSWER_WORDS
    rows = []
    for sentence in sentences:
        text = _MARKER.sub(" ", sentence.text)  # "[2]" cites a chunk: not a number the context must hold
        content = content_words(text)
        absent = [w not in known for w in content]
        run = longest = 0
        for a in absent:
            run = run + 1 if a else 0
            longest = max(longest, run)
        unique = set(content)
        overlap = np.array([len(unique & s) for s in index.sentence_words]) if index.sentence_words else np.zeros(0)
        best = np.argsort(-overlap, kind="stable")[:_LOCAL_TOP_K]
        local = frozenset().union(*(index.sentence_words[i] for i in best)) | asked | _ANSWER_WORDS
        nums = numbers(text)
        names = [stem(w) for w in words(text)[1:] if w[0].isupper() and w.lower() not in STOPWORDS]
        rows.append(
            (
                len(content),
                sum(absent),
                longest,
                sum(w not in local for w in content),
                sum(n not in index.numbers and n not in asked_numbers for n in nums),
                sum(n not in known for n in names),
            )
        )
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(SPAN_FEATURES))


# -- structured -----------------------------------------------------------------------------------------------------
STRUCTURED_FEATURES = ("attribute_consistency",)


def structured_features(sentences: Sequence[Sentence], index: ContextIndex) -> np.ndarray:
    """Per sentence: 1 when no attribute is contradicted or asserted without a value, else 0."""
    rows = []
    for sentence in sentences:
        stems = [stem(w) for w in words(sentence.text)]
        consistent = 1.0
        for attribute in index.attributes:
            position = _mention(stems, attribute.words)
            if position is None:
                continue
            window = " ".join(words(sentence.text)[max(0, position - 4) : position + 1])
            negated = _NEGATION.search(window) is not None
            if attribute.value is None or attribute.value == negated:
                consistent = 0.0
                break
        rows.append((consistent,))
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(STRUCTURED_FEATURES))


def _mention(stems: list[str], key: frozenset[str]) -> int | None:
    """Index of the first word of the sentence that belongs to ``key``, if all of the key's words occur."""
    if not key or not key <= set(stems):
        return None
    return min(i for i, s in enumerate(stems) if s in key)


def _as_mapping(item: ContextItem) -> Mapping[str, Any] | None:
    if isinstance(item, Mapping):
        return item
    text = context_text(item).strip()
    if text.startswith("{") and text.endswith("}"):
        try:
            parsed = json.loads(text)
        except ValueError:
            return None
        return parsed if isinstance(parsed, Mapping) else None
    return None


def _attributes(mapping: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> list[_Attribute]:
    """Boolean and null leaves of a mapping, keyed by the content words of their key (and parent key)."""
    found: list[_Attribute] = []
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            found.extend(_attributes(value, (*prefix, str(key))))
        elif isinstance(value, bool) or value is None or (isinstance(value, str) and value.lower() in _BOOL_TEXT):
            leaf = _key_words(str(key))
            if not leaf:
                continue
            truth = value if isinstance(value, bool) or value is None else _BOOL_TEXT[value.lower()]
            found.append(_Attribute(frozenset(leaf), truth))
    return found


_BOOL_TEXT: dict[str, bool | None] = {
    "true": True,
    "false": False,
    "none": None,
    "null": None,
    "yes": True,
    "no": False,
}
_GENERIC_KEY_WORDS = frozenset({"good", "for", "is", "has", "have", "allows", "accepts", "the", "of", "with", "and"})


def _key_words(key: str) -> list[str]:
    """Words a sentence must contain to talk about a key: ``OutdoorSeating`` -> outdoor, seat. Keys of three or
    more words usually open with a category (``RestaurantsTakeOut``), which sentences rarely repeat: dropped."""
    parts = [p for p in _CAMEL.split(key) if p]
    if len(parts) >= 3:
        parts = parts[1:]
    return [stem(p) for p in parts if p.lower() not in _GENERIC_KEY_WORDS and len(p) > 2]


# -- embedding ------------------------------------------------------------------------------------------------------
EMBEDDING_FEATURES = ("max_similarity",)


def embedding_features(sentences: Sequence[Sentence], index: ContextIndex, embeddings: Any) -> np.ndarray:
    """Per sentence: cosine similarity to the closest context sentence."""
    if not sentences:
        return np.zeros((0, 1))
    context = index.sentence_embeddings(embeddings)
    answer = embed_texts(embeddings, [s.text for s in sentences])
    return np.asarray((answer @ context.T).max(axis=1, keepdims=True), dtype=np.float64)


# -- cross-encoder --------------------------------------------------------------------------------------------------
CROSS_ENCODER_FEATURES = ("relevance",)
CROSS_ENCODER_MODEL = "ms-marco-minilm-l12-reranker"
"""The packaged INT8 ONNX ms-marco-MiniLM-L-12-v2 (``slmkit.core.onnx_models``), the retriever's reranker."""


class CrossEncoder:
    """The packaged MS MARCO cross-encoder as (query, passage) -> relevance logit; loads on first use (the ONNX
    session is shared with the retriever's reranker in the same process)."""

    def __init__(self, model: str = CROSS_ENCODER_MODEL, max_length: int = 256) -> None:
        self.model = model
        self.max_length = max_length
        self._tokenizer: Any = None
        self._session: Any = None
        self._inputs: set[str] = set()
        self._lock = threading.Lock()

    def _load(self) -> None:
        with self._lock:
            if self._session is None:
                from slmkit.core.onnx_models import onnx_session, onnx_tokenizer

                tokenizer = onnx_tokenizer(self.model)
                tokenizer.enable_truncation(max_length=self.max_length, strategy="longest_first")
                tokenizer.no_padding()
                session = onnx_session(self.model)
                self._inputs = {node.name for node in session.get_inputs()}
                self._tokenizer, self._session = tokenizer, session

    def logits(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """One relevance logit per (query, passage) pair, each pair run alone (INT8 activations are quantised per
        call, so a batch would let pairs move each other's scores)."""
        if not pairs:
            return np.zeros(0)
        if self._session is None:
            self._load()
        out = np.empty(len(pairs))
        for i, encoding in enumerate(self._tokenizer.encode_batch(list(pairs))):
            feeds = {
                "input_ids": np.asarray([encoding.ids], dtype=np.int64),
                "attention_mask": np.asarray([encoding.attention_mask], dtype=np.int64),
                "token_type_ids": np.asarray([encoding.type_ids], dtype=np.int64),
            }
            result = self._session.run(None, {k: v for k, v in feeds.items() if k in self._inputs})[0]
            out[i] = float(np.asarray(result).reshape(-1)[0])
        return out


def best_windows(sentence: Sentence, index: ContextIndex, k: int = 1, width: int = 1) -> list[str]:
    """The ``k`` context passages of ``width`` sentences (centred on one sentence, within one item) that share the
    most content words with ``sentence``."""
    if not index.sentences:
        return []
    unique = set(content_words(sentence.text))
    overlap = np.array([len(unique & s) for s in index.sentence_words])
    best = np.argsort(-overlap, kind="stable")[:k]
    out = []
    for i in best:
        lo, hi = i - (width - 1) // 2, i + width // 2 + 1
        owner = index.sentence_item[i]
        pieces = [
            index.sentences[j]
            for j in range(max(0, lo), min(len(index.sentences), hi))
            if index.sentence_item[j] == owner
        ]
        out.append(" ".join(pieces))
    return out


def cross_encoder_features(sentences: Sequence[Sentence], index: ContextIndex, encoder: CrossEncoder) -> np.ndarray:
    """Per sentence: the cross-encoder's relevance logit of (sentence, the context sentence it overlaps most)."""
    pairs = [(s.text, (best_windows(s, index) or [""])[0]) for s in sentences]
    return encoder.logits(pairs).reshape(len(sentences), len(CROSS_ENCODER_FEATURES))
