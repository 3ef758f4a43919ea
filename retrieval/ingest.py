"""Incremental ingestion: paths -> plan -> pieces of chunks -> staged -> Chroma + manifest, crash-safe.

Plan: folders are walked (hidden names skipped); each supported file is compared with its manifest record: same
size and mtime -> unchanged without reading it; otherwise its SHA-256 decides (same content -> unchanged, the new
mtime remembered). Manifest sources under a given folder (or given by name) that no longer exist are removed.

Pipeline: a thread loads and splits the changed files one after the other and gives each chunk a content-derived
id, ``sha256(source, page, occurrence, text)``, so the same chunk always gets the same id and re-ingestion can never
duplicate it; it runs at most two pieces ahead (a bounded queue). Text and markdown files above ``STREAM_BYTES`` are
read from disk in blocks while they are split (see ``Splitter.iter_split``), so no file is ever in memory whole.
The chunks flow in pieces of about ``batch_chunks``, whatever the files; per piece:

    1. embed the chunks that need it                    (not those the file's committed version already has in
                                                          Chroma, nor those an interrupted run already embedded)
    2. stage the piece                                    (manifest ``staged`` rows, vectors included)

and once every chunk of one or more files is staged, their switch-over, all under the commit lock:

    3. mark the files pending                             (manifest)
    4. upsert their new chunks from the staged rows       (Chroma; chunks kept from the old version only get
                                                          their metadata updated when their offsets moved)
    5. commit their chunk lists and records               (manifest, one transaction: the switch-over point;
                                                          their staged rows go in the same transaction)
    6. delete the old versions' chunks                    (Chroma)
    7. clear pending                                      (manifest)

Small files therefore share a piece and one switch-over, as before; a big file is committed at once, when its last
piece is staged, and until then searches see its previous version (or nothing). Memory stays bounded by a few
pieces and one window of text, whatever the size of a file. A crash anywhere leaves Chroma with at most some extra
chunks of pending files; :func:`reconcile` deletes those on the next open, and the next ``ingest`` redoes whatever
was not committed, embedding only what no staged row holds: an interrupted ingestion of a big file resumes. Staged
rows of a file whose content (SHA-256) or splitting settings changed, or that vanished, are dropped when the next
ingestion looks at it. Nothing is duplicated or lost.

Bad files: every file that cannot be ingested is one ``SkippedFile`` and the rest goes on. Files are read only
through :func:`~slmkit.retrieval.loaders.open_regular`, so FIFOs, devices and sockets (or symlinks to them, such as
``/dev/zero``) are listed as ``special`` without being read; a file that changes or disappears between planning and
reading is skipped (``unreadable``) and picked up by the next run. Sources are keyed by
:func:`~slmkit.retrieval.loaders.source_name`, so a file name that is not valid UTF-8 is ingested under its
``\\xNN``-escaped name, and found unchanged next time. A folder that cannot be listed keeps its ingested files.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import hashlib
import json
import os
import queue
import stat
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from slmkit.core.errors import DocumentLoadError, KnowledgeBaseError
from slmkit.retrieval.bm25 import terms
from slmkit.retrieval.loaders import (
    check_unchanged,
    file_kind,
    is_streamable,
    is_supported,
    load_file,
    open_regular,
    source_name,
    stream_text,
    unreadable_reason,
)
from slmkit.retrieval.manifest import ChunkRow, Manifest, SourceRecord, StagedRow

if TYPE_CHECKING:
    import numpy as np
    from langchain_core.documents import Document

    from slmkit.retrieval.splitting import Splitter
    from slmkit.retrieval.store import ChunkStore

__all__ = [
    "STREAM_BYTES",
    "ChunkIds",
    "IngestReport",
    "SkipKind",
    "SkippedFile",
    "VerifyReport",
    "chunk_ids",
    "ingest",
    "reconcile",
    "verify",
]

STREAM_BYTES = 1 << 20
"""Text and markdown files larger than this are read in blocks while they are split, never whole."""
_QUEUE_PIECES = 2
"""Pieces the splitting thread may run ahead of embedding."""
_UPSERT_ROWS = 1024
"""Staged chunks read and written to Chroma at a time during a switch-over."""
_RECLAIM_BYTES = 32 << 20
"""Free room in the manifest (left by committed staged rows) above which an ingestion gives it back."""

SkipKind = Literal["missing", "unsupported", "special", "unreadable"]
"""Why a file was skipped: ``missing`` (a given path does not exist), ``unsupported`` (not a document type slmkit
reads), ``special`` (a FIFO, device, socket or folder link: not a file at all), ``unreadable`` (a document that
could not be read: permissions, corrupt, changed or vanished while read, a folder that cannot be listed)."""


class SkippedFile(BaseModel):
    """A file that was not ingested, and why."""

    path: str
    """The path as text (see ``source_name``: undecodable bytes of a file name as ``\\xNN``)."""
    reason: str
    kind: SkipKind


class IngestReport(BaseModel):
    """What one ``ingest`` call did."""

    added: list[str] = Field(default_factory=list)
    updated: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    unchanged: int = 0
    skipped: list[SkippedFile] = Field(default_factory=list)
    chunks_embedded: int = 0
    """New chunks (chunks a changed file kept from its old version are not embedded again)."""
    chunks_resumed: int = 0
    """New chunks that an interrupted earlier ingestion had embedded and staged: not embedded again."""
    chunks_removed: int = 0
    seconds: float = 0.0


class VerifyReport(BaseModel):
    """What ``verify`` found (and, with ``repair``, did)."""

    manifest_chunks: int
    chroma_chunks: int
    missing: int = 0
    """Chunks the manifest lists that Chroma lacks."""
    orphans: int = 0
    """Chunks in Chroma that no manifest row lists (deleted when repairing)."""
    damaged_sources: list[str] = Field(default_factory=list)
    """Files with missing chunks: embedded again when repairing."""
    reingested: list[str] = Field(default_factory=list)
    skipped: list[SkippedFile] = Field(default_factory=list)
    manifest_set_aside: str | None = None
    """Where a damaged manifest was moved before it was rebuilt from the files Chroma held chunks of."""
    staged_chunks: int = 0
    """Chunks an interrupted ingestion staged for files it did not commit: not an inconsistency (searches never see
    them); the next ingestion of those files resumes from them."""

    @property
    def consistent(self) -> bool:
        return not (self.missing or self.orphans)


Committing = Callable[[], AbstractContextManager[object]]
"""Exclusive access while Chroma and the manifest change (``KnowledgeBaseLocks.committing``)."""


@dataclasses.dataclass(frozen=True)
class _Todo:
    file: Path
    """The file on disk (its name may hold undecodable bytes; ``record.path`` is its ``source_name``)."""
    record: SourceRecord
    """The file as found now (its chunk count is filled in once split)."""
    new: bool


@dataclasses.dataclass(frozen=True)
class _Chunk:
    """One chunk of the file ``todo[file]``, the ``seq``-th."""

    file: int
    seq: int
    text: str
    metadata: dict[str, Any]
    row: ChunkRow


@dataclasses.dataclass(frozen=True)
class _FileEnd:
    """Every chunk of ``todo[file]`` came before; ``error``: it could not be read after all (then skipped)."""

    file: int
    chunks: int
    error: str | None = None


_Event = _Chunk | _FileEnd


def _abspath(path: str | os.PathLike[str]) -> Path:
    # abspath, not resolve(): a symlinked folder keeps the name the user gave it.
    return Path(os.path.abspath(Path(path).expanduser()))


def _walk(folder: Path, on_error: Callable[[OSError], None]) -> Iterator[Path]:
    """Every non-hidden entry that is not a folder, recursively; folders that cannot be listed go to ``on_error``."""
    for root, dirs, files in os.walk(folder, onerror=on_error):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name


def _under(source: str, scope: str) -> bool:
    return source == scope or source.startswith(scope + os.sep)


def _sha256(path: Path) -> tuple[str, os.stat_result]:
    """The file's SHA-256 and its status as hashed; ``DocumentLoadError`` if it is not a regular file, or changed
    while it was read (a file still being written must not be recorded under a hash of half its content)."""
    digest = hashlib.sha256()
    read = 0
    with open_regular(path) as (fh, st):
        while block := fh.read(1 << 20):
            digest.update(block)
            read += len(block)
        check_unchanged(fh, st, read, path)
    return digest.hexdigest(), st


class ChunkIds:
    """Content-derived ids of one file's chunks, given in order: equal text at the same place (source, page, n-th
    repeat) -> equal id. Remembers a 16-byte digest per distinct chunk, not its text."""

    def __init__(self) -> None:
        self._seen: dict[bytes, int] = {}

    def __call__(self, chunk: Document) -> str:
        source, page, text = str(chunk.metadata["source"]), str(chunk.metadata.get("page")), chunk.page_content
        key = hashlib.blake2b("\x1f".join((source, page, text)).encode("utf-8", "surrogatepass"), digest_size=16)
        occurrence = self._seen[key.digest()] = self._seen.get(key.digest(), -1) + 1
        raw = "\x1f".join((source, page, str(occurrence), text))
        return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def chunk_ids(chunks: list[Document]) -> list[str]:
    """Content-derived ids of one file's chunks (see ``ChunkIds``)."""
    ids = ChunkIds()
    return [ids(chunk) for chunk in chunks]


class _Pipeline:
    """Runs ``produce`` in a thread, handing its events over in lists through a queue of ``depth`` lists: the
    loading and splitting of the next pieces overlaps the embedding of this one, and never runs further ahead.
    An exception in the thread is raised where the events are read."""

    _END = object()

    def __init__(self, produce: Callable[[], Iterator[_Event]], size: int, depth: int = _QUEUE_PIECES) -> None:
        self._produce = produce
        self._size = size
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slmkit-ingest-split", daemon=True)

    def __enter__(self) -> Iterator[_Event]:
        self._thread.start()
        return self._events()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()  # the thread stops at its next hand-over; a daemon, it is not waited for long
        deadline = time.monotonic() + 2.0
        while self._thread.is_alive() and time.monotonic() < deadline:
            try:
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=0.05)

    def _events(self) -> Iterator[_Event]:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield from item

    def _run(self) -> None:
        try:
            batch: list[_Event] = []
            for event in self._produce():
                batch.append(event)
                if len(batch) >= self._size:
                    self._put(batch)
                    batch = []
            self._put(batch)
            self._put(self._END)
        except _StoppedError:
            return
        except BaseException as exc:  # handed to the reading thread
            try:
                self._put(exc)
            except _StoppedError:
                return

    def _put(self, item: object) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _StoppedError


class _StoppedError(Exception):
    """The reader of a ``_Pipeline`` is gone."""


class _Progress:
    """A progress bar in chunks, with rate and ETA. Until every file has been split, the total is estimated from the
    bytes still to split, at the chunks per byte seen so far (a guess from ``chunk_size`` before the first)."""

    def __init__(self, todo: list[_Todo], show: bool, chunk_size: int, piece: int) -> None:
        self.piece = piece
        self.sizes = [t.record.size for t in todo]
        self.total_bytes = sum(self.sizes)
        self.files_done = 0
        self.split_chunks = 0
        self.split_bytes = 0  # of the files split to the end
        self.current = (-1, 0)  # the file being split, bytes of it split so far
        self.bytes_per_chunk = max(chunk_size * 3, 1)  # ~4 characters a token, chunks ~3/4 full
        self.bar: Any = None
        if show and todo:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=self._estimate(), desc="ingesting", unit="chunk", leave=False, smoothing=0.1, dynamic_ncols=True
            )
            self._postfix()

    def split(self, chunk: _Chunk) -> None:
        self.split_chunks += 1
        if chunk.metadata.get("format") in ("text", "markdown"):  # offsets into the text ~ bytes into the file
            self.current = (chunk.file, min(int(chunk.metadata.get("end_index", 0)), self.sizes[chunk.file]))

    def file_end(self, event: _FileEnd) -> None:
        self.split_bytes += self.sizes[event.file]
        self.current = (-1, 0)
        self.files_done += 1

    def processed(self, chunks: int) -> None:
        if self.bar is not None:
            self.bar.total = max(self._estimate(), self.bar.n + chunks)
            self.bar.update(chunks)
            self._postfix()

    @contextmanager
    def committing(self, chunks: int) -> Iterator[Callable[[int], None]]:
        """A second bar while a switch-over writes more than a few pieces' chunks to Chroma (a big file's, in
        one go); yields the function that advances it."""
        if self.bar is None or chunks <= 4 * self.piece:
            yield lambda n: None
            return
        from tqdm.auto import tqdm

        bar = tqdm(total=chunks, desc="committing", unit="chunk", leave=False, smoothing=0.1, dynamic_ncols=True)

        def advance(n: int) -> None:
            bar.update(n)

        try:
            yield advance
        finally:
            bar.close()

    def _estimate(self) -> int:
        seen = self.split_bytes + self.current[1]
        per_byte = self.split_chunks / seen if seen and self.split_chunks else 1 / self.bytes_per_chunk
        return max(self.split_chunks + round(max(self.total_bytes - seen, 0) * per_byte), 1)

    def _postfix(self) -> None:
        self.bar.set_postfix_str(f"{self.files_done}/{len(self.sizes)} files", refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
        return trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None


def _release_freed_memory() -> None:
    """Hand memory freed by the embedder back to the system (glibc's ``malloc_trim``).

    Each embedding batch allocates activations of another shape, and glibc keeps what they free in its arenas: over
    the hundreds of pieces of a big file, the resident size of the PyTorch embedder crept from 680 MB to 1.4 GB
    although no batch needed more than ~320 MB. Trimming after each piece keeps it at the size of one batch."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class _Ingestion:
    def __init__(
        self,
        manifest: Manifest,
        store: ChunkStore,
        embed: Callable[[list[str]], np.ndarray],
        splitter: Splitter,
        settings: str,
        batch_chunks: int,
        committing: Committing,
    ) -> None:
        self.committing = committing
        self.manifest = manifest
        self.store = store
        self.embed = embed
        self.splitter = splitter
        self.settings = settings
        self.batch_chunks = batch_chunks
        self.report = IngestReport()
        self.run = uuid.uuid4().hex
        """Stamps the staged rows this ingestion writes (or reuses): those are the ones it commits."""
        self._files: dict[str, Path] = {}
        self._scopes: list[str] = []
        self._unlisted: list[str] = []
        self._unchanged: set[str] = set()

    def plan(self, paths: Iterable[str | os.PathLike[str]]) -> tuple[list[_Todo], list[str]]:
        """Files to (re)ingest, and sources to remove."""
        files = self._files  # source name -> the file
        scopes = self._scopes  # folders whose vanished sources go
        unlisted = self._unlisted  # folders that could not be listed: their sources stay

        def unlistable(exc: OSError) -> None:
            folder = Path(exc.filename)
            unlisted.append(source_name(folder))
            self._skip(folder, f"folder cannot be listed: {exc.strerror or exc}", "unreadable")

        for given in paths:
            path = _abspath(given)
            if path.is_dir():
                scopes.append(source_name(path))
                for found in _walk(path, unlistable):
                    self._add(files, found)
            elif os.path.lexists(path):  # a file of any kind, or a broken link: compared (and reported) below
                self._add(files, path)
            else:  # a path that no longer exists: its sources go
                scopes.append(source_name(path))
                if not any(_under(s, source_name(path)) for s in self.manifest.source_paths()):
                    self._skip(path, "no such file or folder", "missing")
        todo = [item for key, path in sorted(files.items()) if (item := self._compare(key, path)) is not None]
        removed = [s for s in self.manifest.source_paths() if self._vanished(s)]
        return todo, removed

    def _vanished(self, source: str) -> bool:
        """Whether ``source`` is in a folder this ingestion walked (or was given by name) and is gone."""
        return (
            source not in self._files
            and any(_under(source, d) for d in self._scopes)
            and not any(_under(source, d) for d in self._unlisted)
        )

    def _add(self, files: dict[str, Path], path: Path) -> None:
        """Add ``path`` under its source name, unless that name is already another file's (see ``source_name``)."""
        key = source_name(path)
        other = files.get(key)
        if other is None or other == path:
            files[key] = path
            return
        keep, drop = (path, other) if str(path) == key else (other, path)  # keep the one with a valid name
        files[key] = keep
        self._skip(
            drop,
            "its name is not valid UTF-8, and written with \\x escapes it names another file: rename it",
            "unreadable",
        )

    def _compare(self, key: str, path: Path) -> _Todo | None:
        """A file's work item, or ``None`` when it is unchanged or cannot be considered."""
        if not is_supported(path):
            self._skip(path, f"unsupported file type {path.suffix or '(none)'!r}", "unsupported")
            return None
        try:
            st = path.stat()
        except OSError as exc:
            self._skip(path, f"cannot be read: {unreadable_reason(path, exc)}", "unreadable")
            return None
        if not stat.S_ISREG(st.st_mode):  # never opened: a FIFO would block, /dev/zero never end
            self._skip(path, f"{file_kind(st.st_mode)}, not a regular file", "special")
            return None
        record = self.manifest.source(key)
        current = record is not None and record.settings == self.settings
        if record and current and (record.size, record.mtime_ns) == (st.st_size, st.st_mtime_ns):
            self.report.unchanged += 1
            self._unchanged.add(key)
            return None
        try:
            sha, st = _sha256(path)
        except DocumentLoadError as exc:  # changed while hashed, or swapped for a FIFO since the stat
            self._skip(path, str(exc), "unreadable")
            return None
        except OSError as exc:
            self._skip(path, f"cannot be read: {unreadable_reason(path, exc)}", "unreadable")
            return None
        if record and current and record.sha256 == sha:
            self.manifest.touch(key, st.st_size, st.st_mtime_ns)
            self.report.unchanged += 1
            self._unchanged.add(key)
            return None
        found = SourceRecord(key, st.st_size, st.st_mtime_ns, sha, self.settings, 0)
        return _Todo(path, found, new=record is None)

    def _skip(self, path: Path, reason: str, kind: SkipKind) -> None:
        self.report.skipped.append(SkippedFile(path=source_name(path), reason=reason, kind=kind))

    def drop_stale_staged(self, todo: list[_Todo]) -> None:
        """Forget staged rows this ingestion cannot use: of files it found changed since, unchanged (the committed
        version is current), or gone. Files it did not look at, or could not read, keep theirs."""
        wanted = {t.record.path: (t.record.sha256, t.record.settings) for t in todo}
        stale = [
            (source, sha, settings)
            for source, sha, settings in self.manifest.staged_keys()
            if (source in wanted and wanted[source] != (sha, settings))
            or source in self._unchanged
            or self._vanished(source)
        ]
        if stale:
            with self.committing():
                self.manifest.drop_staged(stale)

    # -- the pipeline -------------------------------------------------------------------------------------------
    def chunks(self, todo: list[_Todo]) -> Iterator[_Event]:
        """Every file's chunks, then its end (runs in the pipeline's thread: reads files, touches no store)."""
        for index, item in enumerate(todo):
            ids = ChunkIds()
            seq = 0
            try:
                for chunk in self._split(item):
                    row = ChunkRow(
                        id=ids(chunk),
                        metadata=json.dumps(chunk.metadata, sort_keys=True),
                        terms=" ".join(terms(chunk.page_content)),
                    )
                    yield _Chunk(index, seq, chunk.page_content, chunk.metadata, row)
                    seq += 1
                self._check_still(item)
            except DocumentLoadError as exc:
                yield _FileEnd(index, seq, str(exc))
                continue
            yield _FileEnd(index, seq)

    def _split(self, todo: _Todo) -> Iterator[Document]:
        if todo.record.size > STREAM_BYTES and is_streamable(todo.file):
            metadata, blocks = stream_text(todo.file)
            yield from self.splitter.iter_split(blocks, metadata)
            return
        for doc in load_file(todo.file):
            yield from self.splitter.iter_split_one(doc)

    def _check_still(self, todo: _Todo) -> None:
        """Raise unless the file is still as planned: what was loaded must be what its record (hash) describes."""
        record = todo.record
        try:
            st = todo.file.stat()
        except OSError as exc:
            raise DocumentLoadError(f"{record.path} cannot be read: {unreadable_reason(todo.file, exc)}.") from exc
        if (st.st_size, st.st_mtime_ns) != (record.size, record.mtime_ns):
            raise DocumentLoadError(
                f"{record.path} changed while it was being ingested ({record.size} -> {st.st_size} bytes): run "
                "ingest again once it is completely written."
            )

    def ingest(self, todo: list[_Todo], progress: _Progress) -> None:
        """Stream ``todo`` through embedding, staging and switch-overs (see the module docstring)."""
        piece: list[_Chunk] = []
        finished: list[tuple[_Todo, int]] = []  # split to the end; staged once ``piece`` is
        with _Pipeline(lambda: self.chunks(todo), self.batch_chunks) as events:
            for event in events:
                if isinstance(event, _Chunk):
                    piece.append(event)
                    progress.split(event)
                    if len(piece) >= self.batch_chunks:
                        self.stage(todo, piece, progress)
                        piece = []
                        self.switch(finished, progress)
                        finished = []
                    continue
                progress.file_end(event)
                if event.error is None:
                    finished.append((todo[event.file], event.chunks))
                else:
                    piece = [c for c in piece if c.file != event.file]
                    self._skip(todo[event.file].file, event.error, "unreadable")
        self.stage(todo, piece, progress)
        self.switch(finished, progress)

    def stage(self, todo: list[_Todo], piece: list[_Chunk], progress: _Progress) -> None:
        """Embed what the piece needs (outside the commit lock: searches go on meanwhile), then stage it."""
        if not piece:
            return
        import numpy as np

        ids = [c.row.id for c in piece]
        committed = self.manifest.committed_metadata(ids)  # kept from the file's current version
        resumed = self.manifest.staged_vectors(ids)  # embedded by an interrupted run
        new = [c for c in piece if c.row.id not in committed and c.row.id not in resumed]
        texts = list(dict.fromkeys(c.text for c in new))  # a text repeated within the piece is embedded once
        vectors: dict[str, bytes] = {}
        if texts:
            matrix = np.asarray(self.embed(texts), dtype=np.float32)
            vectors = {text: matrix[i].tobytes() for i, text in enumerate(texts)}
            _release_freed_memory()
        new_ids = {c.row.id for c in new}
        by_file: dict[int, list[StagedRow]] = {}
        for c in piece:
            vector = vectors.get(c.text) if c.row.id in new_ids else None
            staged = StagedRow(c.row, c.seq, c.text if vector is not None else None, vector)
            by_file.setdefault(c.file, []).append(staged)
        with self.committing():
            for file, rows in by_file.items():
                self.manifest.stage(todo[file].record, self.run, rows)
        self.report.chunks_embedded += len(new)
        self.report.chunks_resumed += sum(c.row.id in resumed and c.row.id not in committed for c in piece)
        progress.processed(len(piece))

    def switch(self, finished: list[tuple[_Todo, int]], progress: _Progress) -> None:
        """The switch-over of files whose every chunk is staged: one commit for all of them."""
        if not finished:
            return
        records = [dataclasses.replace(t.record, chunks=n) for t, n in finished]
        paths = [r.path for r in records]
        with self.committing(), progress.committing(sum(r.chunks for r in records)) as advance:
            self.manifest.mark_pending(paths)
            moved, stale = self._write_staged(paths, advance)
            if moved:
                self.store.update_metadata([i for i, _ in moved], [json.loads(m) for _, m in moved])
            self.manifest.commit(staged=records, run=self.run)
            if stale:
                self.store.delete(stale)
            self.manifest.clear_pending(paths)
        for todo, _ in finished:
            (self.report.added if todo.new else self.report.updated).append(todo.record.path)
        self.report.chunks_removed += len(stale)

    def _write_staged(
        self, paths: list[str], advance: Callable[[int], None]
    ) -> tuple[list[tuple[str, str]], list[str]]:
        """Upsert the new chunks of ``paths`` into Chroma from their staged rows, ``_UPSERT_ROWS`` at a time (a big
        file's rows are never in memory together); (kept chunks whose metadata moved, as (id, metadata JSON);
        committed chunks that the new versions lack)."""
        rows: list[tuple[str, str, str, bytes]] = []
        moved: list[tuple[str, str]] = []
        stale: list[str] = []
        for path in paths:
            after = -1
            while part := self.manifest.staged_new(path, self.run, after, _UPSERT_ROWS):
                after = part[-1][0]
                rows.extend(row[1:] for row in part)
                advance(len(part))
                if len(rows) >= _UPSERT_ROWS:
                    self._upsert(rows)
                    rows = []
            kept_moved, unbacked = self.manifest.staged_moved(path, self.run)
            if unbacked:  # the next ingestion embeds them: only rows with a vector count as resumed
                raise KnowledgeBaseError(
                    f"{path}: {unbacked} staged chunks have no vector; nothing was changed. Run the ingestion again."
                )
            moved.extend(kept_moved)
            stale.extend(self.manifest.staged_stale(path, self.run))
        self._upsert(rows)
        return moved, stale

    def _upsert(self, rows: list[tuple[str, str, str, bytes]]) -> None:
        """Write staged (id, text, metadata JSON, vector bytes) rows to Chroma."""
        if not rows:
            return
        import numpy as np

        ids, texts, metadatas, vectors = zip(*rows, strict=True)
        matrix = np.frombuffer(b"".join(vectors), dtype=np.float32).reshape(len(rows), -1)
        self.store.upsert(list(ids), matrix, list(texts), [json.loads(m) for m in metadatas])

    def remove(self, sources: list[str]) -> None:
        if not sources:
            return
        with self.committing():
            self.manifest.mark_pending(sources)
            ids = self.manifest.chunk_ids(sources)
            self.manifest.commit(removed=sources)
            self.store.delete(sorted(ids))
            self.manifest.clear_pending(sources)
        self.report.removed.extend(sources)
        self.report.chunks_removed += len(ids)


def ingest(
    paths: Iterable[str | os.PathLike[str]],
    *,
    manifest: Manifest,
    store: ChunkStore,
    embed: Callable[[list[str]], np.ndarray],
    splitter: Splitter,
    settings: str,
    batch_chunks: int,
    show_progress: bool,
    committing: Committing = nullcontext,
) -> IngestReport:
    """Bring the knowledge base in line with ``paths`` (files and folders); see the module docstring.

    The caller holds the knowledge base's writer lock; ``committing`` is taken around every change of Chroma and
    the manifest, so readers in other processes never see half a batch, nor half a file.
    """
    started = time.perf_counter()
    run = _Ingestion(manifest, store, embed, splitter, settings, batch_chunks, committing)
    with committing():
        run.report.chunks_removed += _drop_orphans(manifest, store)
        reconcile(manifest, store)
        damaged = _check_counts(manifest, store)
    if damaged:
        paths = [*paths, *damaged]
    todo, removed = run.plan(paths)
    run.remove(removed)
    run.drop_stale_staged(todo)
    progress = _Progress(todo, show_progress, splitter.chunk_size, batch_chunks)
    try:
        run.ingest(todo, progress)
    finally:
        progress.close()
    with committing():
        manifest.reclaim(_RECLAIM_BYTES)
    run.report.seconds = round(time.perf_counter() - started, 3)
    return run.report


def _drop_orphans(manifest: Manifest, store: ChunkStore) -> int:
    """Delete the chunks of an embedded collection that outlived its manifest; how many.

    A manifest that never committed (and has nothing pending) over a collection holding chunks means the manifest was
    lost (moved away when corrupt, deleted): no manifest lists those chunks, yet dense search would keep finding
    them. Every file is embedded again on this first ingestion anyway. A Chroma server is left alone: another
    machine's manifest may own its collection.
    """
    if store.url is not None or manifest.generation or manifest.pending():
        return 0
    orphans = store.ids()
    store.delete(sorted(orphans))
    return len(orphans)


def _check_counts(manifest: Manifest, store: ChunkStore) -> list[str]:
    """The cheap part of ``verify``, run by every ingestion: when Chroma does not hold as many chunks as the manifest
    lists (a deleted or truncated Chroma folder), repair; the files whose chunks went missing, to ingest again."""
    if store.count() == manifest.chunk_count():
        return []
    return verify(manifest, store, repair=True).damaged_sources


def verify(manifest: Manifest, store: ChunkStore, *, repair: bool) -> VerifyReport:
    """Compare the manifest's chunk ids with Chroma's; with ``repair``, delete orphans and forget the files whose
    chunks are missing (so the next ingestion of them embeds them as new files). Hold the commit lock."""
    listed = manifest.chunk_sources()
    held = store.ids()
    missing = listed.keys() - held
    orphans = held - listed.keys()
    if store.url is not None:  # a shared server's collection may hold another machine's chunks: leave them
        orphans = set()
    damaged = sorted({listed[i] for i in missing})
    report = VerifyReport(
        manifest_chunks=len(listed),
        chroma_chunks=len(held),
        missing=len(missing),
        orphans=len(orphans),
        damaged_sources=damaged,
        staged_chunks=manifest.staged_count(),
    )
    if repair:
        if orphans:
            store.delete(sorted(orphans))
        if damaged:
            kept = manifest.chunk_ids(damaged) & held
            manifest.commit(removed=damaged)
            store.delete(sorted(kept))
    return report


def reconcile(manifest: Manifest, store: ChunkStore) -> None:
    """Finish what an interrupted ingestion left: drop Chroma chunks of pending files that the manifest lacks."""
    pending = manifest.pending()
    for source in pending:
        extra = store.ids(where={"source": source}) - manifest.chunk_ids([source])
        if extra:
            store.delete(sorted(extra))
    if pending:
        manifest.clear_pending(pending)
