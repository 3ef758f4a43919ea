"""The manifest: what a knowledge base holds, in one SQLite file, changed only in transactions.

Tables:

    sources  path, size, mtime_ns, sha256, settings, chunks   one row per ingested file
    chunks   id, source, metadata, terms                       one row per chunk (terms feed the BM25 rebuild)
    pending  source                                            files whose Chroma writes may be unfinished
    meta     key, value                                        generation (bumped by every commit), embedder

The manifest is the knowledge base's truth: a chunk exists when its row is committed. Chroma is written *before*
the commit (new chunks) and *after* it (deleting stale ones), with the file listed in ``pending`` in between, so
after a crash the knowledge base only has to delete the Chroma entries of pending files that the manifest does
not list (see ``KnowledgeBase``). The BM25 index on disk carries the generation it was built from; any other
generation means it is rebuilt from ``chunks.terms``.

SQLite failures surface as slmkit errors that say what to do: a damaged file as ``CorruptManifestError`` (move the
knowledge base's folder away and ingest again), a full disk, missing permissions or a lock as
``KnowledgeBaseError``. Only text is stored: source paths come from ``source_name`` (valid UTF-8 always).
"""

from __future__ import annotations

import shlex
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmkit.core.errors import CorruptManifestError, KnowledgeBaseError

__all__ = ["ChunkRow", "Manifest", "SourceRecord"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sources (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL,
    settings TEXT NOT NULL, chunks INTEGER NOT NULL, ingested_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id TEXT PRIMARY KEY, source TEXT NOT NULL, metadata TEXT NOT NULL, terms TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_source ON chunks (source);
CREATE TABLE IF NOT EXISTS pending (source TEXT PRIMARY KEY);
"""


@dataclass(frozen=True)
class SourceRecord:
    """One ingested file as it was when ingested."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    settings: str
    """Fingerprint of the splitting settings: when they change, the file is split again."""
    chunks: int


@dataclass(frozen=True)
class ChunkRow:
    id: str
    metadata: str
    """The chunk's metadata as canonical JSON, to tell a moved chunk (same text, new offsets) from an unchanged one."""
    terms: str
    """BM25 terms joined by spaces."""


# SQLite primary result codes (``sqlite_errorcode & 0xFF``) that mean the file, not slmkit, is at fault.
_CORRUPT = {11: "the file is malformed", 26: "it is not an SQLite database"}
_ENVIRONMENT = {
    3: "permission denied",
    5: "another process holds it locked",
    6: "it is locked",
    8: "it is read-only",
    10: "a disk I/O error",
    13: "the disk is full",
    14: "it cannot be opened",
}


def manifest_error(path: Path, exc: sqlite3.Error) -> Exception | None:
    """The slmkit error for an SQLite failure caused by the file or the machine; ``None`` for anything else."""
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    if code in _CORRUPT:
        folder = path.parent
        moved = shlex.quote(f"{folder}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        return CorruptManifestError(
            f"The manifest of knowledge base {folder.name!r}, {path}, is damaged ({_CORRUPT[code]}: {exc}). "
            f"Rebuild it from the files it held with `slmkit doctor --kb {folder.name} --path "
            f"{shlex.quote(str(folder.parent))}` (the damaged file is kept beside it), or move the knowledge base's "
            f"folder out of the way (`mv {shlex.quote(str(folder))} {moved}`) and ingest your documents again "
            f"(`slmkit ingest PATH... --kb {folder.name} --path {shlex.quote(str(folder.parent))}`): every file is "
            "read and embedded again, nothing is duplicated."
        )
    if code in _ENVIRONMENT:
        return KnowledgeBaseError(
            f"The manifest {path} cannot be used: {_ENVIRONMENT[code]} ({exc}). Check the disk space and the "
            "permissions of its folder, and that no other slmkit process is writing to it, then retry."
        )
    return None


def _next_generation(db: sqlite3.Connection) -> int:
    """Bump the generation inside ``db``'s open transaction; the new one."""
    row = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
    generation = int(row[0]) + 1 if row else 1
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('generation', ?)", (str(generation),))
    return generation


class Manifest:
    """SQLite-backed record of sources and chunks; safe to share between threads of one process."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        with self._sqlite_errors():
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(_SCHEMA)
            except BaseException:
                self._db.close()
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _sqlite_errors(self) -> Iterator[None]:
        """SQLite errors caused by the file or the machine, as slmkit errors that say what to do."""
        try:
            yield
        except sqlite3.Error as exc:
            error = manifest_error(self.path, exc)
            if error is None:
                raise
            raise error from exc

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._sqlite_errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:
                    with suppress(sqlite3.Error):  # a damaged file may refuse even this; the first error matters
                        self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _rows(self, sql: str, params: Iterable[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock, self._sqlite_errors():
            return self._db.execute(sql, tuple(params)).fetchall()

    # -- meta ---------------------------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def record_embedder(self, embedding_id: str) -> None:
        """The chunks now hold vectors of ``embedding_id``: recorded with a new generation (readers reopen)."""
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('embedding', ?)", (embedding_id,))
            _next_generation(db)

    @property
    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    # -- reading ------------------------------------------------------------------------------------------------
    def source(self, path: str) -> SourceRecord | None:
        rows = self._rows("SELECT path, size, mtime_ns, sha256, settings, chunks FROM sources WHERE path = ?", (path,))
        return SourceRecord(*rows[0]) if rows else None

    def source_paths(self) -> list[str]:
        return [str(row[0]) for row in self._rows("SELECT path FROM sources ORDER BY path")]

    def chunk_count(self) -> int:
        return int(self._rows("SELECT count(*) FROM chunks")[0][0])

    def chunk_metadata(self, source: str) -> dict[str, str]:
        """Chunk id -> metadata JSON of one source."""
        return {str(i): str(m) for i, m in self._rows("SELECT id, metadata FROM chunks WHERE source = ?", (source,))}

    def chunk_ids(self, sources: Iterable[str]) -> set[str]:
        ids: set[str] = set()
        for source in sources:
            ids.update(self.chunk_metadata(source))
        return ids

    def chunk_sources(self) -> dict[str, str]:
        """Every chunk id -> its source."""
        return {str(i): str(src) for i, src in self._rows("SELECT id, source FROM chunks")}

    def all_terms(self) -> tuple[list[str], list[list[str]]]:
        """Every chunk id and its BM25 terms, in a stable order."""
        rows = self._rows("SELECT id, terms FROM chunks ORDER BY rowid")
        return [str(r[0]) for r in rows], [str(r[1]).split() for r in rows]

    def pending(self) -> list[str]:
        return [str(row[0]) for row in self._rows("SELECT source FROM pending")]

    # -- writing ------------------------------------------------------------------------------------------------
    def mark_pending(self, sources: Iterable[str]) -> None:
        with self._transaction() as db:
            db.executemany("INSERT OR IGNORE INTO pending (source) VALUES (?)", [(s,) for s in sources])

    def clear_pending(self, sources: Iterable[str]) -> None:
        with self._transaction() as db:
            db.executemany("DELETE FROM pending WHERE source = ?", [(s,) for s in sources])

    def touch(self, path: str, size: int, mtime_ns: int) -> None:
        """Same content, new timestamp: remember it so the next run skips hashing (no generation change)."""
        with self._transaction() as db:
            db.execute("UPDATE sources SET size = ?, mtime_ns = ? WHERE path = ?", (size, mtime_ns, path))

    def commit(self, replaced: list[tuple[SourceRecord, list[ChunkRow]]], removed: Iterable[str] = ()) -> int:
        """Replace the chunks of ``replaced`` sources, forget ``removed`` ones, all at once; the new generation."""
        now = time.time()
        with self._transaction() as db:
            for path in removed:
                db.execute("DELETE FROM chunks WHERE source = ?", (path,))
                db.execute("DELETE FROM sources WHERE path = ?", (path,))
            for record, rows in replaced:
                db.execute("DELETE FROM chunks WHERE source = ?", (record.path,))
                db.executemany(
                    "INSERT INTO chunks (id, source, metadata, terms) VALUES (?, ?, ?, ?)",
                    [(r.id, record.path, r.metadata, r.terms) for r in rows],
                )
                db.execute(
                    "INSERT OR REPLACE INTO sources (path, size, mtime_ns, sha256, settings, chunks, ingested_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (record.path, record.size, record.mtime_ns, record.sha256, record.settings, len(rows), now),
                )
            row = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
            generation = int(row[0]) + 1 if row else 1
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('generation', ?)", (str(generation),))
        return generation
