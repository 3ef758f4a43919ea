"""Loaders: one file -> text ``Document``s with the metadata citations need.

The loader is chosen by file extension (:data:`LOADERS`). Each returns a list of ``Document``s: one per page for a
PDF (``page`` is 1-based, as printed), one for every other format. Structured formats are flattened to
markdown-flavoured text, so the splitter treats their headings alike: HTML ``<h1>``-``<h6>`` and Word "Heading N" /
"Title" paragraphs become ``#`` lines, table rows become ``a | b | c`` lines.

Metadata of every document: ``source`` (the absolute path as given), ``format`` (``text``, ``markdown``, ``html``,
``pdf`` or ``docx``) and, for PDFs, ``page``. Offsets computed later point into this extracted text (newlines
normalised to ``\\n``), which for ``.txt`` and ``.md`` is the file's own text.

A file that cannot be read raises :class:`~slmkit.core.errors.DocumentLoadError` with the reason; ingestion
reports it and goes on with the other files. Every loader reads the file once, through :func:`read_regular_file`:
a FIFO, a device or a socket is refused before it is read (reading one would block, or never end), and a file that
changes while it is read is refused rather than half-ingested.

A file name that is not valid UTF-8 (possible on Linux) is kept as :func:`source_name` writes it, with ``\\xNN``
escapes for the bytes that do not decode: the ``source`` every store and every message uses must be text.
"""

from __future__ import annotations

import codecs
import io
import os
import re
import stat
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from langchain_core.documents import Document

from slmkit.core.errors import DocumentLoadError, MissingDependencyError

__all__ = [
    "LOADERS",
    "check_unchanged",
    "file_kind",
    "is_streamable",
    "is_supported",
    "load_file",
    "open_regular",
    "read_regular_file",
    "source_name",
    "stream_text",
    "unreadable_reason",
]

Loader = Callable[[Path], list[Document]]


def source_name(path: str | os.PathLike[str]) -> str:
    """``path`` as text any encoder accepts: itself when its name is valid UTF-8, else with ``\\xNN`` escapes
    for the undecodable bytes (as ``ls -b`` shows them), so SQLite, Chroma and the terminal can all take it."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words a user recognises."""
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((word for test, word in kinds if test(mode)), "an unusual kind of file")


@contextmanager
def open_regular(path: Path) -> Iterator[tuple[IO[bytes], os.stat_result]]:
    """``path`` opened for reading, with its status, only if it is a regular file.

    Opened non-blocking, so a FIFO without a writer cannot hang the caller; checked with ``fstat`` on the open
    file, so a file swapped for a FIFO or a device after a ``stat`` is still refused.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    with os.fdopen(os.open(path, flags), "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise DocumentLoadError(
                f"{source_name(path)} is {file_kind(st.st_mode)}, not a regular file: only files are ingested."
            )
        yield fh, st


def check_unchanged(fh: IO[bytes], before: os.stat_result, read: int | None, path: Path) -> None:
    """Raise when the file changed while it was read (another program still writing it); ``read``: the bytes read
    in all, once the whole file was read (``None`` while it is being read)."""
    after = os.fstat(fh.fileno())
    same = (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns)
    if not same or (read is not None and read != after.st_size):
        raise DocumentLoadError(
            f"{source_name(path)} changed while it was read ({before.st_size} -> {after.st_size} bytes): "
            "ingest it again once it is completely written."
        )


def read_regular_file(path: Path) -> bytes:
    """The whole content of a regular file, read once; see :func:`open_regular` and :func:`check_unchanged`."""
    with open_regular(path) as (fh, before):
        data = fh.read()
        check_unchanged(fh, before, len(data), path)
    return data


_BINARY = "{name} looks binary (it contains NUL bytes), not text: remove it or rename it."


def _decode(data: bytes, path: Path) -> str:
    if b"\x00" in data[:8192]:
        raise DocumentLoadError(_BINARY.format(name=source_name(path)))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Old Windows text files are the common non-UTF-8 case; cp1252 decodes every byte that matters there.
        text = data.decode("cp1252", errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _read_text(path: Path, fmt: str) -> list[Document]:
    text = _decode(read_regular_file(path), path)
    return [Document(page_content=text, metadata={"source": source_name(path), "format": fmt})]


BLOCK_BYTES = 1 << 20
"""Bytes read at a time by :func:`stream_text`."""


def stream_text(path: Path, block_bytes: int = BLOCK_BYTES) -> tuple[dict[str, Any], Iterator[str]]:
    """A ``.txt`` or ``.md`` file as the metadata of its one document and its text in blocks, read from disk as
    they are consumed: a big file is never in memory whole. The blocks join to exactly the text ``load_file``
    gives (same encoding choice, same newline normalisation); the file is read twice, first to choose the
    encoding. Errors (``DocumentLoadError``) arise while the blocks are consumed."""
    fmt = _STREAMED.get(path.suffix.lower())
    if fmt is None:
        raise DocumentLoadError(f"{source_name(path)}: only text and markdown files are read in blocks.")
    return {"source": source_name(path), "format": fmt}, _text_blocks(path, block_bytes)


def is_streamable(path: Path) -> bool:
    """Whether :func:`stream_text` reads this kind of file."""
    return path.suffix.lower() in _STREAMED


def _text_blocks(path: Path, block_bytes: int) -> Iterator[str]:
    try:
        with open_regular(path) as (fh, before):
            encoding = _encoding(fh, path, block_bytes)
            fh.seek(0)
            decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
            read = 0
            cr = ""  # a "\r" that ended the last block: the next may start with its "\n"
            while True:
                data = fh.read(block_bytes)
                read += len(data)
                check_unchanged(fh, before, None if data else read, path)  # early: a big file takes long
                text = cr + decoder.decode(data, final=not data)
                cr = ""
                if data and text.endswith("\r"):
                    text, cr = text[:-1], "\r"
                if text:
                    yield text.replace("\r\n", "\n").replace("\r", "\n")
                if not data:
                    break
    except OSError as exc:
        raise DocumentLoadError(f"{source_name(path)} cannot be read: {unreadable_reason(path, exc)}.") from exc


def _encoding(fh: IO[bytes], path: Path, block_bytes: int) -> str:
    """What :func:`_decode` would choose for the whole file, read in blocks: UTF-8 when every byte decodes."""
    if b"\x00" in fh.read(8192):
        raise DocumentLoadError(_BINARY.format(name=source_name(path)))
    fh.seek(0)
    check = codecs.getincrementaldecoder("utf-8")()
    while True:
        data = fh.read(block_bytes)
        try:
            check.decode(data, final=not data)
        except UnicodeDecodeError:
            return "cp1252"
        if not data:
            return "utf-8-sig"


def load_text(path: Path) -> list[Document]:
    return _read_text(path, "text")


def load_markdown(path: Path) -> list[Document]:
    return _read_text(path, "markdown")


_HTML_BLOCKS = (
    "p", "div", "li", "tr", "br", "pre", "blockquote", "section", "article", "table", "ul", "ol", "dd", "dt",
)  # fmt: skip


def load_html(path: Path) -> list[Document]:
    try:
        from bs4 import BeautifulSoup
    except ImportError as exc:
        raise MissingDependencyError("beautifulsoup4", extra="retrieval", purpose="HTML documents") from exc
    soup = BeautifulSoup(_decode(read_regular_file(path), path), "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(["script", "style", "noscript", "template", "head"]):
        tag.decompose()
    headings = soup.find_all(re.compile(r"^h[1-6]$"))
    for tag in headings:
        level = int(tag.name[1])
        tag.replace_with(f"\n\n{'#' * level} {tag.get_text(' ', strip=True)}\n\n")
    for tag in soup.find_all(_HTML_BLOCKS):
        tag.insert_before("\n")
        tag.insert_after("\n")
    for cell in soup.find_all(["td", "th"]):
        cell.insert_after(" | ")
    text = soup.get_text()
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    if title and not headings:
        text = f"# {title}\n\n{text}"
    return [Document(page_content=text, metadata={"source": source_name(path), "format": "html"})]


def load_pdf(path: Path) -> list[Document]:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError
    except ImportError as exc:
        raise MissingDependencyError("pypdf", extra="retrieval", purpose="PDF documents") from exc
    data = read_regular_file(path)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentLoadError(
                f"{source_name(path)} is password-protected: save an unprotected copy and ingest that."
            )
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise DocumentLoadError(
            f"{source_name(path)} is not a readable PDF ({exc}): re-export it or remove it."
        ) from exc
    docs = [
        Document(
            page_content=text.replace("\r\n", "\n").replace("\r", "\n"),
            metadata={"source": source_name(path), "format": "pdf", "page": number},
        )
        for number, text in enumerate(pages, start=1)
        if text.strip()
    ]
    if not docs:
        raise DocumentLoadError(
            f"{source_name(path)} has no text layer (a scan?): run OCR on it first, then ingest the result."
        )
    return docs


def load_docx(path: Path) -> list[Document]:
    try:
        import docx
        from docx.opc.exceptions import PackageNotFoundError
        from docx.table import Table
    except ImportError as exc:
        raise MissingDependencyError("python-docx", extra="retrieval", purpose="Word documents") from exc
    data = read_regular_file(path)
    try:
        document = docx.Document(io.BytesIO(data))
        blocks: list[str] = []
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                blocks.extend(" | ".join(cell.text.strip() for cell in row.cells) for row in item.rows)
            elif text := item.text.strip():
                blocks.append(_docx_heading_prefix(item) + text)
    except (PackageNotFoundError, zipfile.BadZipFile, ValueError, KeyError) as exc:
        raise DocumentLoadError(
            f"{source_name(path)} is not a readable .docx file ({exc}): re-save it from Word."
        ) from exc
    return [Document(page_content="\n\n".join(blocks), metadata={"source": source_name(path), "format": "docx"})]


def _docx_heading_prefix(paragraph: Any) -> str:
    style = paragraph.style.name if paragraph.style is not None else ""
    if style == "Title":
        return "# "
    if match := re.fullmatch(r"Heading ([1-6])", style or ""):
        return "#" * int(match.group(1)) + " "
    return ""


LOADERS: dict[str, Loader] = {
    ".txt": load_text,
    ".text": load_text,
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".html": load_html,
    ".htm": load_html,
    ".pdf": load_pdf,
    ".docx": load_docx,
}
"""Loader per lower-case file extension."""

_STREAMED = {".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown"}
"""Extensions :func:`stream_text` reads, and their format."""


def is_supported(path: Path) -> bool:
    return path.suffix.lower() in LOADERS


def load_file(path: str | Path) -> list[Document]:
    """Documents of one file; raises ``DocumentLoadError`` with the reason when it cannot be read."""
    path = Path(path)
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        known = ", ".join(sorted(LOADERS))
        raise DocumentLoadError(
            f"{source_name(path)}: unsupported file type {path.suffix or '(none)'!r}; supported: {known}."
        )
    try:
        return loader(path)
    except (DocumentLoadError, MissingDependencyError):
        raise
    except OSError as exc:
        raise DocumentLoadError(f"{source_name(path)} cannot be read: {unreadable_reason(path, exc)}.") from exc
    except Exception as exc:  # third-party parsers raise almost anything on malformed input
        raise DocumentLoadError(
            f"{source_name(path)} could not be parsed ({type(exc).__name__}: {exc}): fix or remove it."
        ) from exc


def unreadable_reason(path: Path, exc: OSError) -> str:
    """Why ``path`` could not be opened, in a few words (what follows "cannot be read: ")."""
    if isinstance(exc, FileNotFoundError):
        if path.is_symlink():
            return f"a broken symbolic link (to {source_name(os.readlink(path))})"
        return "no such file (deleted or moved meanwhile?)"
    return str(exc.strerror or exc)
