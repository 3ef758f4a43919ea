"""The assistant's prompts, kept short and literal for a 135M-parameter model.

    passages -> ``excerpt`` each (the sentences that share most words with the query, in their order, within a
                character budget) -> ``format_sources``: "[1] ...\n[2] ..."
    instructions (system) -> history (last turns) -> sources + question (human)           ``answer_messages``
    last turns + follow-up -> "Standalone question:"                                     ``rewrite_messages``

Short excerpts matter twice: a tiny model copies the right sentence far more often when the context is a few
sentences rather than a few pages, and the prompt's length is most of the time to the first token.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from langchain_core.documents import Document
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from slmkit.guards.text import content_words, split_sentences

__all__ = [
    "REWRITE_INSTRUCTIONS",
    "SentenceScorer",
    "answer_messages",
    "excerpt",
    "format_sources",
    "one_per_source",
    "passage_text",
    "rewrite_messages",
]

REWRITE_INSTRUCTIONS = (
    "Rewrite the follow-up question so that it can be understood without the conversation. "
    "Reply with the question only."
)


SentenceScorer = Callable[[str, list[str]], Sequence[float]]
"""Relevance of each sentence to the query, higher is better (e.g. ``CrossEncoderReranker().score``)."""


def excerpt(text: str, query: str, budget: int, scorer: SentenceScorer | None = None) -> str:
    """The sentences of ``text`` most relevant to ``query``, in their original order, at most ``budget``
    characters (at least one sentence, cut at a word boundary if it alone is too long). Relevance is the number of
    content words shared with the query, or ``scorer``'s when given."""
    sentences = [s.text for line in text.splitlines() for s in split_sentences(line)]
    if not sentences:
        return ""
    if scorer is not None:
        scores = [float(x) for x in scorer(query, sentences)]
    else:
        wanted = set(content_words(query))
        scores = [float(len(wanted & set(content_words(sentence)))) for sentence in sentences]
    ranked = sorted(range(len(sentences)), key=lambda i: (-scores[i], i))
    keep: list[int] = []
    used = 0
    for i in ranked:
        cost = len(sentences[i]) + (1 if keep else 0)
        if keep and used + cost > budget:
            continue
        keep.append(i)
        used += cost
    out = " ".join(sentences[i] for i in sorted(keep))
    if len(out) > budget:
        out = out[:budget].rsplit(" ", 1)[0] + " ..."
    return out


def format_sources(excerpts: Sequence[str]) -> str:
    """Numbered sources, one per line, as the instructions cite them."""
    return "\n".join(f"[{i}] {text}" for i, text in enumerate(excerpts, start=1))


def answer_messages(
    question: str, excerpts: Sequence[str], *, instructions: str, history: Sequence[BaseMessage] = ()
) -> list[BaseMessage]:
    """The instructions, the conversation so far, then the sources and the question."""
    sources = format_sources(excerpts)
    return [SystemMessage(instructions), *history, HumanMessage(f"Sources:\n{sources}\n\nQuestion: {question}")]


def rewrite_messages(question: str, history: Sequence[BaseMessage]) -> list[BaseMessage]:
    """Ask for a standalone version of ``question`` given the last turns of ``history``."""
    lines = []
    for message in history:
        role = "User" if isinstance(message, HumanMessage) else "Assistant" if isinstance(message, AIMessage) else ""
        if role and isinstance(message.content, str):
            lines.append(f"{role}: {message.content.strip()}")
    conversation = "\n".join(lines)
    return [
        SystemMessage(REWRITE_INSTRUCTIONS),
        HumanMessage(f"Conversation:\n{conversation}\n\nFollow-up question: {question}\nStandalone question:"),
    ]


def passage_text(document: Document) -> str:
    """The passage without the heading line the splitter puts in front (headings are shown separately)."""
    headings = document.metadata.get("headings")
    text = document.page_content
    if headings and text.startswith(f"{headings}\n\n"):
        return text[len(headings) + 2 :]
    return text


def one_per_source(documents: Sequence[Document], k: int) -> list[Document]:
    """The first ``k`` sources (file and page) in rank order, each as one passage made of all its retrieved
    chunks in text order: two chunks of one abstract should not take two of a few places in the prompt, and a
    citation names a source anyway. The passage keeps the best chunk's id, metadata and relevance."""
    groups: dict[tuple[str, object], list[Document]] = {}
    for doc in documents:
        key = (str(doc.metadata.get("source", "")), doc.metadata.get("page"))
        if key in groups or len(groups) < k:
            groups.setdefault(key, []).append(doc)
    out = []
    for group in groups.values():
        best = group[0]
        if len(group) == 1:
            out.append(best)
            continue
        ordered = sorted(group, key=lambda d: d.metadata.get("start_index", 0))
        meta = dict(best.metadata)
        if all("start_line" in d.metadata and "end_line" in d.metadata for d in group):
            meta["start_line"] = min(d.metadata["start_line"] for d in group)
            meta["end_line"] = max(d.metadata["end_line"] for d in group)
        body = "\n".join(passage_text(d) for d in ordered)
        headings = meta.get("headings")
        text = f"{headings}\n\n{body}" if headings and len({d.metadata.get("headings") for d in group}) == 1 else body
        out.append(Document(id=best.id, page_content=text, metadata=meta))
    return out
