"""Token-aware splitting: loaded ``Document`` -> chunks that fit the embedder, with offsets and headings.

Flow for one document:

    text -> sections (markdown headings; one section for plain text and PDF pages)
         -> langchain-text-splitters ``RecursiveCharacterTextSplitter`` per section (paragraphs, lines, sentences,
            words), lengths counted in the embedder's tokens (or tiktoken's for other embedders)
         -> chunks whose text is "Heading > Subheading" + blank line + body

Every chunk carries the heading path in its text, because a paragraph deep in a section rarely repeats what the
section is about: with the path, both BM25 and the embedder see it (this is what lifts SciFact, where each title
is a heading). ``chunk_size`` counts the whole chunk, heading line included, so a chunk never outgrows the
embedder's window.

Metadata added to the document's own: ``headings`` (when there are any), ``start_index`` / ``end_index``
(character offsets of the body in the extracted text) and ``start_line`` / ``end_line`` (1-based, inclusive).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from langchain_core.documents import Document

from slmkit.core.errors import ConfigurationError, MissingDependencyError

if TYPE_CHECKING:
    from langchain_text_splitters import RecursiveCharacterTextSplitter

__all__ = ["HEADING_SEPARATOR", "Section", "Splitter", "markdown_sections"]

HEADING_SEPARATOR = " > "
_STRUCTURED = frozenset({"markdown", "html", "docx"})
# Paragraphs first, then lines, sentences, clauses and words: chunks end where a reader would pause.
_SEPARATORS = ["\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ", ""]
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^(```|~~~)")


@dataclass(frozen=True)
class Section:
    """A stretch of text under one heading path; ``start``/``end`` are offsets into the document text."""

    start: int
    end: int
    headings: tuple[str, ...]


def markdown_sections(text: str) -> list[Section]:
    """Split markdown at ATX headings (``#`` .. ``######``), outside fenced code; heading lines are dropped."""
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    start = 0
    offset = 0
    in_fence = False
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if _FENCE.match(stripped):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(stripped)
        if match:
            sections.append(Section(start, offset, tuple(h for _, h in path)))
            level = len(match.group(1))
            while path and path[-1][0] >= level:
                path.pop()
            path.append((level, match.group(2).strip()))
            start = offset + len(line)
        offset += len(line)
    sections.append(Section(start, len(text), tuple(h for _, h in path)))
    return [s for s in sections if text[s.start : s.end].strip()]


class Splitter:
    """Splits documents into chunks of at most ``chunk_size`` tokens, ``chunk_overlap`` shared between neighbours.

    Example:
        .. code-block:: python

            splitter = Splitter(chunk_size=256, chunk_overlap=32, count_tokens=len_in_tokens)
            chunks = splitter.split(load_file("notes.md"))
    """

    def __init__(self, chunk_size: int, chunk_overlap: int, count_tokens: Callable[[str], int]) -> None:
        if chunk_size < 16:
            raise ConfigurationError(f"chunk_size must be at least 16 tokens, got {chunk_size}.")
        if not 0 <= chunk_overlap < chunk_size // 2:
            raise ConfigurationError(
                f"chunk_overlap must be between 0 and half of chunk_size ({chunk_size // 2}), got {chunk_overlap}."
            )
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self.count_tokens = count_tokens
        self._splitters: dict[int, RecursiveCharacterTextSplitter] = {}

    def split(self, documents: list[Document]) -> list[Document]:
        return [chunk for doc in documents for chunk in self.split_one(doc)]

    def split_one(self, doc: Document) -> list[Document]:
        text = doc.page_content
        if doc.metadata.get("format") in _STRUCTURED:
            sections = markdown_sections(text)
        else:
            sections = [Section(0, len(text), ())] if text.strip() else []
        newlines = [i for i, char in enumerate(text) if char == "\n"]
        chunks: list[Document] = []
        for section in sections:
            header = HEADING_SEPARATOR.join(section.headings)
            body_budget = self.chunk_size
            if header:
                # The heading line counts against the budget, but never squeezes the body below half of it.
                body_budget = max(self.chunk_size - self.count_tokens(header) - 1, self.chunk_size // 2)
            body_text = text[section.start : section.end]
            cursor = -1
            for body in self._text_splitter(body_budget).split_text(body_text):
                # Offsets are found here, not with add_start_index: that option mixes the overlap (in tokens)
                # with chunk lengths (in characters) and misplaces chunks whenever the two differ.
                cursor = body_text.find(body, cursor + 1)
                start = section.start + cursor
                end = start + len(body)
                metadata = {
                    **doc.metadata,
                    "start_index": start,
                    "end_index": end,
                    "start_line": bisect.bisect_right(newlines, start - 1) + 1,
                    "end_line": bisect.bisect_right(newlines, end - 1) + 1,
                }
                content = body
                if header:
                    metadata["headings"] = header
                    content = f"{header}\n\n{body}"
                chunks.append(Document(page_content=content, metadata=metadata))
        return chunks

    def _text_splitter(self, budget: int) -> RecursiveCharacterTextSplitter:
        if budget not in self._splitters:
            try:
                from langchain_text_splitters import RecursiveCharacterTextSplitter
            except ImportError as exc:
                raise MissingDependencyError("langchain-text-splitters", extra="retrieval", purpose="chunking") from exc
            self._splitters[budget] = RecursiveCharacterTextSplitter(
                chunk_size=budget,
                chunk_overlap=min(self.chunk_overlap, budget // 2),
                length_function=self.count_tokens,
                separators=_SEPARATORS,
                keep_separator="end",
            )
        return self._splitters[budget]
