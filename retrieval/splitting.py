"""Token-aware splitting: loaded ``Document`` -> chunks that fit the embedder, with offsets and headings.

Flow for one document, whose text may arrive whole or in blocks (a big file read from disk as it is split):

    text -> sections (markdown headings; one section for plain text and PDF pages)
         -> windows: a section longer than ``window`` characters (1 Mi by default) is cut into windows at a
            paragraph break (else a line break, a sentence end, a space) in the second half of each window
         -> langchain-text-splitters ``RecursiveCharacterTextSplitter`` per window (paragraphs, lines, sentences,
            words), lengths counted in the embedder's tokens (or tiktoken's for other embedders)
         -> chunks whose text is "Heading > Subheading" + blank line + body

Every chunk carries the heading path in its text, because a paragraph deep in a section rarely repeats what the
section is about: with the path, both BM25 and the embedder see it (this is what lifts SciFact, where each title
is a heading). ``chunk_size`` counts the whole chunk, heading line included, so a chunk never outgrows the
embedder's window.

Windows keep memory bounded whatever the size of a file: the recursive splitter holds every piece of the text it
is given, so a 50 MB section given whole would sit in memory several times over. They depend only on the text, so
a file is always split the same way, whether it was read whole or in blocks of any size; a section shorter than a
window (every section of an ordinary document) is split exactly as before windows existed. Chunks never span two
windows, and the chunk after a window's end does not overlap the one before it.

Metadata added to the document's own: ``headings`` (when there are any), ``start_index`` / ``end_index``
(character offsets of the body in the extracted text) and ``start_line`` / ``end_line`` (1-based, inclusive).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langchain_core.documents import Document

from slmkit.core.errors import ConfigurationError, MissingDependencyError

if TYPE_CHECKING:
    from langchain_text_splitters import RecursiveCharacterTextSplitter

__all__ = ["HEADING_SEPARATOR", "WINDOW_CHARS", "Section", "Segment", "Splitter", "markdown_sections"]

HEADING_SEPARATOR = " > "
WINDOW_CHARS = 1 << 20
"""Longest stretch of a section split at once (characters)."""
_STRUCTURED = frozenset({"markdown", "html", "docx"})
# Paragraphs first, then lines, sentences, clauses and words: chunks end where a reader would pause.
_SEPARATORS = ["\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ", ""]
_WINDOW_CUTS = ("\n\n", "\n", ". ", " ")
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^(```|~~~)")
_NEWLINE = re.compile("\n")
_FEED_CHARS = 1 << 20  # text given whole is fed to the segmenter in slices of this size


@dataclass(frozen=True)
class Section:
    """A stretch of text under one heading path; ``start``/``end`` are offsets into the document text."""

    start: int
    end: int
    headings: tuple[str, ...]


@dataclass(frozen=True)
class Segment:
    """A window of a section: its text, where it starts in the document, and the heading path above it."""

    start: int
    """Character offset of ``text`` in the document text."""
    lines_before: int
    """Newlines in the document text before ``start``."""
    text: str
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


def _cut(text: str, window: int) -> int:
    """Where to end a window of ``text`` (longer than ``window``): after the last paragraph break, else line
    break, sentence end or space in its second half; at ``window`` characters when there is none."""
    for separator in _WINDOW_CUTS:
        at = text.rfind(separator, window // 2, window)
        if at >= 0:
            return at + len(separator)
    return window


class _Segmenter:
    """Text arriving in blocks of any size -> the segments of its sections, as soon as they are complete.

    Markdown-like text is read line by line for headings and code fences (the same rules as
    :func:`markdown_sections`); a line longer than the window is body text, whatever it starts with.
    """

    def __init__(self, structured: bool, window: int) -> None:
        self.structured = structured
        self.window = window
        self.parts: list[str] = []  # the current section's text not yet given out
        self.size = 0
        self.start = 0  # offset of parts[0] in the document
        self.lines = 0  # newlines before it
        self.path: list[tuple[int, str]] = []
        self.headings: tuple[str, ...] = ()
        self.in_fence = False
        self.carry = ""  # an incomplete line (structured text)
        self.long_line = False  # the current line outgrew the window: body text

    def feed(self, block: str) -> Iterator[Segment]:
        if not self.structured:
            yield from self._body(block)
            return
        lines = (self.carry + block).splitlines(keepends=True)
        self.carry = ""
        if lines and (lines[-1].endswith("\r") or lines[-1].splitlines()[0] == lines[-1]):
            self.carry = lines.pop()  # its end (or the "\n" of a "\r\n") may be in the next block
        for line in lines:
            yield from self._line(line)
        if len(self.carry) > self.window:  # too long to be a heading: body text (a fence still counts)
            if not self.long_line:
                self._fence(self.carry)
            self.long_line = True
            carry, self.carry = self.carry, ""
            yield from self._body(carry)

    def close(self) -> Iterator[Segment]:
        if self.carry:
            carry, self.carry = self.carry, ""
            yield from self._line(carry)
        yield from self._flush()

    def _fence(self, line: str) -> None:
        if _FENCE.match(line.strip()):
            self.in_fence = not self.in_fence

    def _line(self, line: str) -> Iterator[Segment]:
        if self.long_line:  # the rest of a line already given out as body text
            self.long_line = False
            yield from self._body(line)
            return
        self._fence(line)
        match = None if self.in_fence or len(line) > self.window else _HEADING.match(line.strip())
        if not match:
            yield from self._body(line)
            return
        yield from self._flush()
        level = len(match.group(1))
        while self.path and self.path[-1][0] >= level:
            self.path.pop()
        self.path.append((level, match.group(2).strip()))
        self.headings = tuple(h for _, h in self.path)
        self.start += len(line)  # the heading line itself is in no section
        self.lines += line.count("\n")

    def _body(self, text: str) -> Iterator[Segment]:
        self.parts.append(text)
        self.size += len(text)
        if self.size < self.window:
            return
        rest = "".join(self.parts)
        while len(rest) >= self.window:
            end = _cut(rest, self.window)
            yield from self._emit(rest[:end])
            rest = rest[end:]
        self.parts, self.size = [rest], len(rest)

    def _flush(self) -> Iterator[Segment]:
        text = "".join(self.parts)
        self.parts, self.size = [], 0
        yield from self._emit(text)

    def _emit(self, text: str) -> Iterator[Segment]:
        segment = Segment(self.start, self.lines, text, self.headings)
        self.start += len(text)
        self.lines += text.count("\n")
        if text.strip():
            yield segment


class Splitter:
    """Splits documents into chunks of at most ``chunk_size`` tokens, ``chunk_overlap`` shared between neighbours.

    ``window``: the longest stretch of a section split at once (see the module docstring).

    Example:
        .. code-block:: python

            splitter = Splitter(chunk_size=256, chunk_overlap=32, count_tokens=len_in_tokens)
            chunks = splitter.split(load_file("notes.md"))
            for chunk in splitter.iter_split(blocks_of_a_big_file, {"source": path, "format": "text"}):
                ...
    """

    def __init__(
        self, chunk_size: int, chunk_overlap: int, count_tokens: Callable[[str], int], window: int = WINDOW_CHARS
    ) -> None:
        if chunk_size < 16:
            raise ConfigurationError(f"chunk_size must be at least 16 tokens, got {chunk_size}.")
        if not 0 <= chunk_overlap < chunk_size // 2:
            raise ConfigurationError(
                f"chunk_overlap must be between 0 and half of chunk_size ({chunk_size // 2}), got {chunk_overlap}."
            )
        if window < 2:
            raise ConfigurationError(f"window must be at least 2 characters, got {window}.")
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self.count_tokens = count_tokens
        self.window = window
        self._splitters: dict[int, RecursiveCharacterTextSplitter] = {}

    def split(self, documents: list[Document]) -> list[Document]:
        return [chunk for doc in documents for chunk in self.split_one(doc)]

    def split_one(self, doc: Document) -> list[Document]:
        return list(self.iter_split_one(doc))

    def iter_split_one(self, doc: Document) -> Iterator[Document]:
        """``split_one``, one chunk at a time."""
        text = doc.page_content
        return self.iter_split((text[i : i + _FEED_CHARS] for i in range(0, len(text), _FEED_CHARS)), doc.metadata)

    def iter_split(self, blocks: Iterable[str], metadata: dict[str, Any]) -> Iterator[Document]:
        """The chunks of one document whose text arrives in ``blocks`` (of any size), as soon as each is known;
        the same chunks as ``split_one`` of the whole text. Holds about one window of text at a time."""
        segmenter = _Segmenter(metadata.get("format") in _STRUCTURED, self.window)
        for block in blocks:
            for segment in segmenter.feed(block):
                yield from self._chunks(segment, metadata)
        for segment in segmenter.close():
            yield from self._chunks(segment, metadata)

    def _chunks(self, segment: Segment, metadata: dict[str, Any]) -> Iterator[Document]:
        header = HEADING_SEPARATOR.join(segment.headings)
        body_budget = self.chunk_size
        if header:
            # The heading line counts against the budget, but never squeezes the body below half of it.
            body_budget = max(self.chunk_size - self.count_tokens(header) - 1, self.chunk_size // 2)
        text = segment.text
        newlines = [m.start() for m in _NEWLINE.finditer(text)]
        cursor = -1
        for body in self._text_splitter(body_budget).split_text(text):
            # Offsets are found here, not with add_start_index: that option mixes the overlap (in tokens)
            # with chunk lengths (in characters) and misplaces chunks whenever the two differ.
            found = text.find(body, cursor + 1)
            cursor = found if found >= 0 else text.find(body, max(cursor, 0))  # a chunk may start where the last did
            end = cursor + len(body)
            chunk_metadata = {
                **metadata,
                "start_index": segment.start + cursor,
                "end_index": segment.start + end,
                "start_line": segment.lines_before + bisect.bisect_right(newlines, cursor - 1) + 1,
                "end_line": segment.lines_before + bisect.bisect_right(newlines, end - 1) + 1,
            }
            content = body
            if header:
                chunk_metadata["headings"] = header
                content = f"{header}\n\n{body}"
            yield Document(page_content=content, metadata=chunk_metadata)

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
