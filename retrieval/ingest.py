"""Incremental ingestion: paths -> plan -> batches of chunks -> Chroma + manifest, crash-safe.

Plan: folders are walked (hidden names skipped); each supported file is compared with its manifest record: same
size and mtime -> unchanged without reading it; otherwise its SHA-256 decides (same content -> unchanged, the new
mtime remembered). Manifest sources under a given folder (or given by name) that no longer exist are removed.

Batches: changed files are loaded, split and given content-derived ids, ``sha256(source, page, occurrence, text)``,
so the same chunk always gets the same id and re-ingestion can never duplicate it. Per batch of about
``batch_chunks`` chunks:

    1. mark the batch's files pending                   (manifest)
    2. embed and upsert chunks whose id is new           (Chroma; chunks kept from the old version are not
       re-embedded, only their metadata is updated when their offsets moved)
    3. commit the files' new chunk lists and records    (manifest, one transaction: the switch-over point)
    4. delete the old version's chunks                   (Chroma)
    5. clear pending                                     (manifest)

A crash anywhere leaves Chroma with at most some extra chunks of pending files; :func:`reconcile` deletes those on
the next open, and the next ``ingest`` redoes whatever was not committed. Nothing is duplicated or lost.

Bad files: every file that cannot be ingested is one ``SkippedFile`` and the rest goes on. Files are read only
through :func:`~slmkit.retrieval.loaders.open_regular`, so FIFOs, devices and sockets (or symlinks to them, such as
``/dev/zero``) are listed as ``special`` without being read; a file that changes or disappears between planning and
reading is skipped (``unreadable``) and picked up by the next run. Sources are keyed by
:func:`~slmkit.retrieval.loaders.source_name`, so a file name that is not valid UTF-8 is ingested under its
``\\xNN``-escaped name, and found unchanged next time. A folder that cannot be listed keeps its ingested files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from slmkit.core.errors import DocumentLoadError
from slmkit.retrieval.bm25 import terms
from slmkit.retrieval.loaders import (
    check_unchanged,
    file_kind,
    is_supported,
    load_file,
    open_regular,
    source_name,
    unreadable_reason,
)
from slmkit.retrieval.manifest import ChunkRow, Manifest, SourceRecord

if TYPE_CHECKING:
    import numpy as np
    from langchain_core.documents import Document

    from slmkit.retrieval.splitting import Splitter
    from slmkit.retrieval.store import ChunkStore

__all__ = ["IngestReport", "SkipKind", "SkippedFile", "VerifyReport", "ingest", "reconcile", "verify"]

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


@dataclasses.dataclass
class _Prepared:
    record: SourceRecord
    ids: list[str]
    texts: list[str]
    metadatas: list[dict[str, Any]]
    rows: list[ChunkRow]
    new: bool


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


def chunk_ids(chunks: list[Document]) -> list[str]:
    """Content-derived ids: equal text at the same place (source, page, n-th repeat) -> equal id."""
    seen: dict[tuple[str, object, str], int] = {}
    ids = []
    for chunk in chunks:
        key = (str(chunk.metadata["source"]), chunk.metadata.get("page"), chunk.page_content)
        occurrence = seen[key] = seen.get(key, -1) + 1
        raw = "\x1f".join((key[0], str(key[1]), str(occurrence), key[2]))
        ids.append(hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:32])
    return ids


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

    def plan(self, paths: Iterable[str | os.PathLike[str]]) -> tuple[list[_Todo], list[str]]:
        """Files to (re)ingest, and sources to remove."""
        files: dict[str, Path] = {}  # source name -> the file
        scopes: list[str] = []  # folders whose vanished sources go
        unlisted: list[str] = []  # folders that could not be listed: their sources stay

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
        removed = [
            s
            for s in self.manifest.source_paths()
            if s not in files and any(_under(s, d) for d in scopes) and not any(_under(s, d) for d in unlisted)
        ]
        return todo, removed

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
            return None
        found = SourceRecord(key, st.st_size, st.st_mtime_ns, sha, self.settings, 0)
        return _Todo(path, found, new=record is None)

    def _skip(self, path: Path, reason: str, kind: SkipKind) -> None:
        self.report.skipped.append(SkippedFile(path=source_name(path), reason=reason, kind=kind))

    def prepare(self, todo: _Todo) -> _Prepared | None:
        """Load, split and identify one file's chunks (``None`` when it cannot be read: reported, skipped)."""
        path = todo.file
        try:
            chunks = self.splitter.split(load_file(path))
            self._check_still(todo)
        except DocumentLoadError as exc:
            self._skip(path, str(exc), "unreadable")
            return None
        ids = chunk_ids(chunks)
        rows = [
            ChunkRow(id=i, metadata=json.dumps(c.metadata, sort_keys=True), terms=" ".join(terms(c.page_content)))
            for i, c in zip(ids, chunks, strict=True)
        ]
        record = dataclasses.replace(todo.record, chunks=len(chunks))
        return _Prepared(record, ids, [c.page_content for c in chunks], [c.metadata for c in chunks], rows, todo.new)

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

    def flush(self, batch: list[_Prepared]) -> None:
        if not batch:
            return
        paths = [p.record.path for p in batch]
        new_ids: list[str] = []
        new_texts: list[str] = []
        new_metas: list[dict[str, Any]] = []
        for p in batch:  # only this process writes, so the old chunk lists cannot change before the commit
            old = self.manifest.chunk_metadata(p.record.path)
            for chunk_id, text, meta in zip(p.ids, p.texts, p.metadatas, strict=True):
                if chunk_id not in old:
                    new_ids.append(chunk_id)
                    new_texts.append(text)
                    new_metas.append(meta)
        vectors = self.embed(new_texts) if new_ids else None  # the slow part, while readers still search
        with self.committing():
            self.manifest.mark_pending(paths)
            moved_ids: list[str] = []
            moved_metas: list[dict[str, Any]] = []
            stale: list[str] = []
            for p in batch:
                old = self.manifest.chunk_metadata(p.record.path)
                for chunk_id, meta, row in zip(p.ids, p.metadatas, p.rows, strict=True):
                    if chunk_id in old and old[chunk_id] != row.metadata:
                        moved_ids.append(chunk_id)
                        moved_metas.append(meta)
                stale.extend(old.keys() - set(p.ids))
            if vectors is not None:
                self.store.upsert(new_ids, vectors, new_texts, new_metas)
            if moved_ids:
                self.store.update_metadata(moved_ids, moved_metas)
            self.manifest.commit([(p.record, p.rows) for p in batch])
            if stale:
                self.store.delete(stale)
            self.manifest.clear_pending(paths)
        for p in batch:
            (self.report.added if p.new else self.report.updated).append(p.record.path)
        self.report.chunks_embedded += len(new_ids)
        self.report.chunks_removed += len(stale)

    def remove(self, sources: list[str]) -> None:
        if not sources:
            return
        with self.committing():
            self.manifest.mark_pending(sources)
            ids = self.manifest.chunk_ids(sources)
            self.manifest.commit([], removed=sources)
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
    the manifest, so readers in other processes never see half a batch.
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
    batch: list[_Prepared] = []
    for item in _progress(todo, show_progress):
        prepared = run.prepare(item)
        if prepared is None:
            continue
        batch.append(prepared)
        if sum(len(p.ids) for p in batch) >= batch_chunks:
            run.flush(batch)
            batch = []
    run.flush(batch)
    run.report.seconds = round(time.perf_counter() - started, 3)
    return run.report


def _progress(items: list[_Todo], show: bool) -> Iterable[_Todo]:
    if not show or not items:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc="ingesting", unit="file", leave=False)


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
    )
    if repair:
        if orphans:
            store.delete(sorted(orphans))
        if damaged:
            kept = manifest.chunk_ids(damaged) & held
            manifest.commit([], removed=damaged)
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
