"""The manifest: what a knowledge base holds, in one SQLite file, changed only in transactions.

Tables:

    sources  path, size, mtime_ns, sha256, settings, chunks   one row per ingested file
    chunks   id, source, metadata, terms                       one row per chunk (terms feed the BM25 rebuild)
    pending  source                                            files whose Chroma writes may be unfinished
    staged   id, source, seq, sha256, settings, run,           the next version of files being ingested, piece
             metadata, terms, text, vector                     by piece (see below)
    meta     key, value                                        generation (bumped by every commit), embedder

The manifest is the knowledge base's truth: a chunk exists when its row is committed. Chroma is written *before*
the commit (new chunks) and *after* it (deleting stale ones), with the file listed in ``pending`` in between, so
after a crash the knowledge base only has to delete the Chroma entries of pending files that the manifest does
not list (see ``KnowledgeBase``). The BM25 index on disk carries the generation it was built from; any other
generation means it is rebuilt from ``chunks.terms``.

``staged`` is the writer's scratch space, never read by searches: while a file is ingested, each piece of it is
split, embedded and written there (the vector of every chunk that is new, nothing but the row for a chunk the file's
current version already has in Chroma), so an interrupted ingestion keeps what it embedded. The file's switch-over
takes its rows from there in one ``commit``, so searches see its old version or its new one, never half of it.
Rows belong to one content of the file (``sha256``, ``settings``); ``run`` names the ingestion that last wrote them,
the one whose rows are committed.

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

__all__ = ["ChunkRow", "Manifest", "SourceRecord", "StagedRow"]

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
CREATE TABLE IF NOT EXISTS staged (
    id TEXT PRIMARY KEY, source TEXT NOT NULL, seq INTEGER NOT NULL, sha256 TEXT NOT NULL, settings TEXT NOT NULL,
    run TEXT NOT NULL, metadata TEXT NOT NULL, terms TEXT NOT NULL, text TEXT, vector BLOB
);
CREATE INDEX IF NOT EXISTS staged_by_source ON staged (source, seq);
"""

_PARAMS = 500
"""Ids per ``IN (...)`` query (SQLite's parameter limit is 999 in old builds)."""


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


@dataclass(frozen=True)
class StagedRow:
    """One chunk of the next version of a file, written before the file's switch-over."""

    row: ChunkRow
    seq: int
    """Its position in the file."""
    text: str | None
    """The chunk text, with ``vector``; ``None`` for a chunk the file's committed version already has."""
    vector: bytes | None
    """float32 vector bytes of a new chunk; ``None`` keeps the one staged before (or the committed chunk's)."""


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
                if self._db.execute("PRAGMA page_count").fetchone()[0] == 0:  # a new file: see ``reclaim``
                    self._db.execute("PRAGMA auto_vacuum = INCREMENTAL")
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

    def all_term_ids(self) -> tuple[list[str], list[list[int]], dict[str, int]]:
        """``all_terms`` as bm25s takes them compactly: every chunk id, its terms as numbers, and the numbers' terms.

        Read a page at a time, each distinct term kept once: for 60,000 chunks this holds ~60 MB where lists of
        term strings held ~420 MB."""
        vocab: dict[str, int] = {}
        ids: list[str] = []
        numbers: list[list[int]] = []
        with self._lock, self._sqlite_errors():
            cursor = self._db.execute("SELECT id, terms FROM chunks ORDER BY rowid")
            while rows := cursor.fetchmany(4096):
                for chunk_id, text in rows:
                    ids.append(str(chunk_id))
                    numbers.append([vocab.setdefault(term, len(vocab)) for term in str(text).split()])
        return ids, numbers, vocab

    def pending(self) -> list[str]:
        return [str(row[0]) for row in self._rows("SELECT source FROM pending")]

    def _by_ids(self, sql: str, ids: list[str]) -> list[tuple[Any, ...]]:
        """``sql`` with ``{ids}`` standing for a list of placeholders, run over ``ids`` in slices."""
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(ids), _PARAMS):
            part = ids[start : start + _PARAMS]
            rows.extend(self._rows(sql.format(ids=",".join("?" * len(part))), part))
        return rows

    def committed_metadata(self, ids: list[str]) -> dict[str, str]:
        """Chunk id -> metadata JSON of those of ``ids`` that committed chunks have."""
        return {str(i): str(m) for i, m in self._by_ids("SELECT id, metadata FROM chunks WHERE id IN ({ids})", ids)}

    # -- staged chunks (see the module docstring) ----------------------------------------------------------------
    def staged_vectors(self, ids: list[str]) -> set[str]:
        """Those of ``ids`` whose staged row holds a vector."""
        sql = "SELECT id FROM staged WHERE vector IS NOT NULL AND id IN ({ids})"
        return {str(row[0]) for row in self._by_ids(sql, ids)}

    def staged_keys(self) -> list[tuple[str, str, str]]:
        """Every (source, sha256, settings) that staged rows belong to."""
        return [
            (str(a), str(b), str(c)) for a, b, c in self._rows("SELECT DISTINCT source, sha256, settings FROM staged")
        ]

    def staged_count(self) -> int:
        """Staged rows of every file (those of a finished ingestion are gone: only an interrupted one leaves any)."""
        return int(self._rows("SELECT count(*) FROM staged")[0][0])

    def staged_new(self, source: str, run: str, after: int, limit: int) -> list[tuple[int, str, str, str, bytes]]:
        """(seq, id, text, metadata JSON, vector bytes) of the staged chunks of ``source`` with a vector, written by
        ``run``, in file order from after position ``after``; at most ``limit``."""
        rows = self._rows(
            "SELECT seq, id, text, metadata, vector FROM staged WHERE source = ? AND run = ? AND vector IS NOT NULL "
            "AND seq > ? ORDER BY seq LIMIT ?",
            (source, run, after, limit),
        )
        return [(int(q), str(i), str(t), str(m), bytes(v)) for q, i, t, m, v in rows]

    def staged_moved(self, source: str, run: str) -> tuple[list[tuple[str, str]], int]:
        """Kept chunks of ``source`` whose metadata changed, as (id, new metadata JSON); and how many staged rows
        without a vector no committed chunk has (0, unless the staging went wrong)."""
        rows = self._rows(
            "SELECT s.id, s.metadata, c.metadata FROM staged s LEFT JOIN chunks c ON c.id = s.id "
            "WHERE s.source = ? AND s.run = ? AND s.vector IS NULL",
            (source, run),
        )
        moved = [(str(i), str(new)) for i, new, old in rows if old is not None and old != new]
        return moved, sum(old is None for _, _, old in rows)

    def staged_stale(self, source: str, run: str) -> list[str]:
        """Committed chunks of ``source`` that its staged version does not have."""
        rows = self._rows(
            "SELECT id FROM chunks WHERE source = ? AND id NOT IN (SELECT id FROM staged WHERE source = ? AND run = ?)",
            (source, source, run),
        )
        return [str(row[0]) for row in rows]

    # -- writing ------------------------------------------------------------------------------------------------
    def mark_pending(self, sources: Iterable[str]) -> None:
        with self._transaction() as db:
            db.executemany("INSERT OR IGNORE INTO pending (source) VALUES (?)", [(s,) for s in sources])

    def clear_pending(self, sources: Iterable[str]) -> None:
        with self._transaction() as db:
            db.executemany("DELETE FROM pending WHERE source = ?", [(s,) for s in sources])

    def stage(self, record: SourceRecord, run: str, rows: Iterable[StagedRow]) -> None:
        """Write staged chunks of the file ``record`` describes; a vector given as ``None`` keeps a staged one."""
        key = (record.sha256, record.settings)
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO staged (id, source, seq, sha256, settings, run, metadata, terms, text, vector) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET source = excluded.source, "
                "seq = excluded.seq, sha256 = excluded.sha256, settings = excluded.settings, run = excluded.run, "
                "metadata = excluded.metadata, terms = excluded.terms, text = coalesce(excluded.text, text), "
                "vector = coalesce(excluded.vector, vector)",
                [
                    (r.row.id, record.path, r.seq, *key, run, r.row.metadata, r.row.terms, r.text, r.vector)
                    for r in rows
                ],
            )

    def drop_staged(self, keys: Iterable[tuple[str, str, str]]) -> None:
        """Forget the staged rows of these (source, sha256, settings)."""
        with self._transaction() as db:
            db.executemany("DELETE FROM staged WHERE source = ? AND sha256 = ? AND settings = ?", list(keys))

    def reclaim(self, min_bytes: int) -> int:
        """Give the room of deleted rows back to the file system once ``min_bytes`` or more are free, and how much
        that was (0: nothing done). A big file's staged rows leave about 4 kB per chunk behind them once it is
        committed. An incremental vacuum takes a second or two; a manifest made before slmkit turned auto-vacuum on
        is rewritten once by ``VACUUM``, which turns it on. SQLite lets readers go on meanwhile (ingestion holds the
        commit lock around it all the same)."""
        with self._lock, self._sqlite_errors():
            page = int(self._db.execute("PRAGMA page_size").fetchone()[0])
            free = int(self._db.execute("PRAGMA freelist_count").fetchone()[0]) * page
            if free < min_bytes:
                return 0
            if int(self._db.execute("PRAGMA auto_vacuum").fetchone()[0]) == 2:  # incremental
                self._db.executescript("PRAGMA incremental_vacuum;")  # one page per step: executescript steps all
            else:
                self._db.executescript("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;")
        return free

    def touch(self, path: str, size: int, mtime_ns: int) -> None:
        """Same content, new timestamp: remember it so the next run skips hashing (no generation change)."""
        with self._transaction() as db:
            db.execute("UPDATE sources SET size = ?, mtime_ns = ? WHERE path = ?", (size, mtime_ns, path))

    def commit(self, removed: Iterable[str] = (), *, staged: Iterable[SourceRecord] = (), run: str = "") -> int:
        """Replace the chunks of ``staged`` sources by their rows staged by ``run`` (which are then forgotten, with
        any other staged row of theirs), forget ``removed`` ones, all at once; the new generation."""
        now = time.time()
        with self._transaction() as db:
            for path in removed:
                db.execute("DELETE FROM chunks WHERE source = ?", (path,))
                db.execute("DELETE FROM sources WHERE path = ?", (path,))
            for record in staged:
                db.execute("DELETE FROM chunks WHERE source = ?", (record.path,))
                inserted = db.execute(
                    "INSERT INTO chunks (id, source, metadata, terms) SELECT id, source, metadata, terms FROM staged "
                    "WHERE source = ? AND run = ? ORDER BY seq",
                    (record.path, run),
                ).rowcount
                if inserted != record.chunks:
                    raise KnowledgeBaseError(
                        f"{record.path}: {inserted} chunks staged, {record.chunks} expected; nothing was changed. "
                        "Run the ingestion again."
                    )
                db.execute("DELETE FROM staged WHERE source = ?", (record.path,))
                self._record(db, record, inserted, now)
            return _next_generation(db)  # committed as the block ends

    @staticmethod
    def _record(db: sqlite3.Connection, record: SourceRecord, chunks: int, now: float) -> None:
        db.execute(
            "INSERT OR REPLACE INTO sources (path, size, mtime_ns, sha256, settings, chunks, ingested_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (record.path, record.size, record.mtime_ns, record.sha256, record.settings, chunks, now),
        )
