"""Locks that let several processes share one knowledge base folder: one writer, many readers.

Three ``flock`` files in the knowledge base's folder:

    write.lock   held exclusively for a whole ingestion (or repair): one writer at a time, and only the writer
                 reconciles what an interrupted ingestion left (a reader cleaning up would delete the chunks of
                 a writer that is still between its Chroma write and its manifest commit)
    commit.lock  held exclusively while a writer changes Chroma and commits the manifest (embedding, the slow
                 part, happens before); held shared by readers while they search, so a search sees one committed
                 generation, never half a batch
    gate.lock    a turnstile: a committing writer holds it, so a stream of overlapping searches cannot starve it

``flock`` locks belong to an open file, so they also order threads of one process as long as each role opens its
own file, and the kernel drops them when a process dies (a ``kill -9`` never leaves a stale lock). Readers of one
process share one shared lock, counted, so that threads searching in parallel do not release each other's lock.
POSIX only (Linux, macOS); on other systems the locks do nothing and one process at a time may use a folder.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["KnowledgeBaseLocks"]

_EX, _SH, _UN = (fcntl.LOCK_EX, fcntl.LOCK_SH, fcntl.LOCK_UN) if fcntl is not None else (0, 0, 0)

_WAIT_NOTICE_SECONDS = 2.0


def _open(path: Path) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "a+", encoding="utf-8")  # held for the lifetime of the locks object


def _flock(handle: IO[str], operation: int) -> None:
    if fcntl is not None:
        fcntl.flock(handle.fileno(), operation)


def _try_flock(handle: IO[str], operation: int) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(handle.fileno(), operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class KnowledgeBaseLocks:
    """The writer, commit and reader locks of one knowledge base folder, for one ``KnowledgeBase`` object.

    ``notify`` receives one line when a writer has to wait for another process (default: standard error).
    """

    def __init__(self, folder: Path, *, notify: Callable[[str], None] | None = None) -> None:
        self.folder = folder
        self._notify = notify or (lambda line: print(line, file=sys.stderr, flush=True))
        self._handles: dict[tuple[str, str], IO[str]] = {}
        self._guard = threading.Lock()
        self._readers = 0
        self._readers_lock = threading.Lock()
        self._writer = threading.Lock()  # one writing thread per process, too
        self._writer_thread: int | None = None
        self._committing = threading.local()

    def _handle(self, name: str, role: str = "writer") -> IO[str]:
        """The open file for ``name`` in ``role``: readers and the writer of one process need files of their own,
        since ``flock`` would otherwise convert one's lock into the other's instead of making them wait."""
        with self._guard:
            if (name, role) not in self._handles:
                self._handles[name, role] = _open(self.folder / name)
            return self._handles[name, role]

    def close(self) -> None:
        with self._guard:
            for handle in self._handles.values():
                handle.close()
            self._handles.clear()

    # -- writer -------------------------------------------------------------------------------------------------
    @property
    def is_writer(self) -> bool:
        """Whether the calling thread holds the writer lock."""
        return self._writer_thread == threading.get_ident()

    @contextmanager
    def writing(self) -> Iterator[None]:
        """The writer lock, waiting (with one line of notice) while another process writes."""
        if self.is_writer:
            yield
            return
        with self._writer:
            handle = self._handle("write.lock")
            if not _try_flock(handle, _EX):
                self._notify(f"waiting: {self._holder(handle)} is writing to {self.folder} ...")
                _flock(handle, _EX)
            with self._writer_held(handle):
                yield

    @contextmanager
    def writing_if_free(self) -> Iterator[bool]:
        """The writer lock if nobody holds it (yields ``True``), else nothing (``False``), without waiting."""
        if self.is_writer:
            yield True
            return
        if not self._writer.acquire(blocking=False):
            yield False
            return
        try:
            handle = self._handle("write.lock")
            if not _try_flock(handle, _EX):
                yield False
                return
            with self._writer_held(handle):
                yield True
        finally:
            self._writer.release()

    @contextmanager
    def _writer_held(self, handle: IO[str]) -> Iterator[None]:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")  # for the notice of a writer that has to wait
        handle.flush()
        self._writer_thread = threading.get_ident()
        try:
            yield
        finally:
            self._writer_thread = None
            handle.seek(0)
            handle.truncate()
            handle.flush()
            _flock(handle, _UN)

    @staticmethod
    def _holder(handle: IO[str]) -> str:
        handle.seek(0)
        text = handle.read().strip()
        return f"another process ({text})" if text else "another process"

    @contextmanager
    def committing(self) -> Iterator[None]:
        """Exclusive: no search runs while Chroma and the manifest change. Hold it briefly (embed before)."""
        if getattr(self._committing, "depth", 0):
            self._committing.depth += 1
            try:
                yield
            finally:
                self._committing.depth -= 1
            return
        gate, commit = self._handle("gate.lock"), self._handle("commit.lock")
        _flock(gate, _EX)
        try:
            _flock(commit, _EX)
        except BaseException:
            _flock(gate, _UN)
            raise
        self._committing.depth = 1
        try:
            yield
        finally:
            self._committing.depth = 0
            _flock(commit, _UN)
            _flock(gate, _UN)

    # -- readers ------------------------------------------------------------------------------------------------
    @contextmanager
    def reading(self, refresh: Callable[[], None] | None = None) -> Iterator[None]:
        """Shared: searches see one committed generation. Nested and parallel use within a process is counted;
        ``refresh`` runs when this process takes the lock (the only moment another process can have committed),
        before any other thread of the process reads."""
        if getattr(self._committing, "depth", 0):  # a writer reading what it writes
            yield
            return
        with self._readers_lock:
            if self._readers == 0:
                gate, commit = self._handle("gate.lock", "reader"), self._handle("commit.lock", "reader")
                _flock(gate, _SH)  # waits while a writer commits
                try:
                    _flock(commit, _SH)
                finally:
                    _flock(gate, _UN)
                try:
                    if refresh is not None:
                        refresh()
                except BaseException:
                    _flock(commit, _UN)
                    raise
            self._readers += 1
        try:
            yield
        finally:
            with self._readers_lock:
                self._readers -= 1
                if self._readers == 0:
                    _flock(self._handle("commit.lock", "reader"), _UN)
