"""``KnowledgeBase``: a named, persistent collection of document chunks with a dense and a BM25 index.

On disk, under ``path`` (default :func:`~slmkit.retrieval.config.default_kb_root`):

    path/chroma/                  embedded Chroma; one collection per knowledge base (absent with a Chroma server)
    path/<name>/manifest.sqlite   sources, chunks, BM25 terms, pending files, generation (see ``manifest``)
    path/<name>/bm25/<generation>/  the BM25 index built from that generation of the manifest

so several knowledge bases live side by side in one folder. Construction only validates settings; the manifest
and Chroma are opened on first use.

Several processes may use one knowledge base at once (a running ``slmkit serve`` while ``slmkit ingest`` adds
files, say): one writer at a time, any number of readers (see ``locking``). A search sees one committed generation
and the newest one: when another process has committed since the last search, the embedded Chroma client is opened
afresh, and the BM25 index of the new generation loaded. Only a writer reconciles what an interrupted ingestion
left, and every ingestion first checks that Chroma holds what the manifest lists (``verify``): a lost or truncated
Chroma folder is rebuilt from the files, never reported as "unchanged".

Example:
    .. code-block:: python

        from slmkit.retrieval import KnowledgeBase

        kb = KnowledgeBase(name="papers", path="~/kb")
        kb.ingest(["~/papers", "notes.md"])         # again later: only changes are processed
        docs = kb.as_retriever(k=5).invoke("Does vitamin D prevent fractures?")
        docs[0].metadata["source"], docs[0].metadata.get("page")
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmkit.core.errors import CorruptManifestError, KnowledgeBaseError
from slmkit.retrieval.config import DEFAULT_KB_NAME, KnowledgeBaseConfig, check_kb_name, default_kb_root
from slmkit.retrieval.embeddings import SentenceTransformerEmbeddings, embedding_id, resolve_embedding
from slmkit.retrieval.locking import KnowledgeBaseLocks

if TYPE_CHECKING:
    import numpy as np
    from langchain_chroma import Chroma
    from langchain_core.embeddings import Embeddings

    from slmkit.retrieval.bm25 import BM25Index
    from slmkit.retrieval.ingest import IngestReport, VerifyReport
    from slmkit.retrieval.manifest import Manifest
    from slmkit.retrieval.reembed import ReembedReport
    from slmkit.retrieval.retriever import HybridRetriever
    from slmkit.retrieval.store import ChunkStore, Record

__all__ = ["KnowledgeBase"]

_MASK_CACHE_SIZE = 32


class KnowledgeBase:
    """Documents, chunked and indexed for hybrid search; ``ingest`` keeps it in step with files on disk.

    Args:
        name: the knowledge base (also its Chroma collection): 3-512 of ``[A-Za-z0-9._-]``.
        path: the folder holding knowledge bases; ``$SLMKIT_HOME/kb``, else ``~/.local/share/slmkit/kb``.
        embedding: ``None`` for the packaged all-MiniLM-L6-v2, a sentence-transformers folder, or any LangChain
            ``Embeddings``. A knowledge base refuses to be opened with another embedder than the one that built it.
        config: chunking and BM25 settings.
        chroma_url: ``http://host:port`` of a Chroma server (``chroma run``) to hold the vectors instead of the
            embedded store; the manifest and BM25 index stay in ``path``.
    """

    def __init__(
        self,
        name: str = DEFAULT_KB_NAME,
        path: str | os.PathLike[str] | None = None,
        *,
        embedding: Embeddings | str | os.PathLike[str] | None = None,
        config: KnowledgeBaseConfig | None = None,
        chroma_url: str | None = None,
    ) -> None:
        self.name = check_kb_name(name)
        self.path = Path(path).expanduser() if path is not None else default_kb_root()
        self.embedding = resolve_embedding(embedding)
        self.config = config or KnowledgeBaseConfig()
        self.chroma_url = chroma_url
        self._lock = threading.RLock()
        self._manifest: Manifest | None = None
        self._store: ChunkStore | None = None
        self._bm25: tuple[int, BM25Index] | None = None
        self._masks: dict[tuple[int, str], np.ndarray] = {}
        self._locks = KnowledgeBaseLocks(self.folder)
        self._store_generation: int | None = None
        """The manifest generation the Chroma client has seen (``None``: not yet known)."""

    def __repr__(self) -> str:
        where = f", chroma_url={self.chroma_url!r}" if self.chroma_url else ""
        return f"KnowledgeBase(name={self.name!r}, path={str(self.path)!r}{where})"

    @property
    def folder(self) -> Path:
        """Where this knowledge base's manifest and BM25 index live."""
        return self.path / self.name

    def exists(self) -> bool:
        """Whether anything was ever ingested here (checked without opening or creating anything)."""
        return (self.folder / "manifest.sqlite").is_file()

    # -- opening ------------------------------------------------------------------------------------------------
    def _open(self) -> tuple[Manifest, ChunkStore]:
        with self._lock:
            if self._manifest is None or self._store is None:
                from slmkit.retrieval.ingest import reconcile
                from slmkit.retrieval.manifest import Manifest
                from slmkit.retrieval.store import ChunkStore

                manifest = Manifest(self.folder / "manifest.sqlite")
                try:
                    built_with = manifest.get_meta("embedding")
                except BaseException:
                    manifest.close()
                    raise
                current = embedding_id(self.embedding)
                if built_with is not None and built_with != current:
                    manifest.close()
                    raise KnowledgeBaseError(
                        f"Knowledge base {self.name!r} in {self.path} was built with the embedder {built_with!r}, "
                        f"not {current!r}. Open it with that embedder, or ingest into a new knowledge base "
                        "(another name or path)."
                    )
                store = ChunkStore(self.name, folder=self.path / "chroma", url=self.chroma_url)
                self._manifest, self._store = manifest, store
                with self._locks.writing_if_free() as free:  # a live writer finishes its own work
                    if free and manifest.pending():
                        with self._committing():
                            reconcile(manifest, store)
            return self._manifest, self._store

    @contextmanager
    def _committing(self) -> Iterator[None]:
        """Exclusive access while this process changes Chroma and the manifest (see ``locking``)."""
        with self._locks.committing():
            try:
                yield
            finally:
                if self._manifest is not None:
                    self._store_generation = self._manifest.generation

    def _refresh(self) -> None:
        """Open Chroma afresh if another process committed since this one last looked."""
        if self._manifest is None or self._store is None:
            return
        generation = self._manifest.generation
        if generation != self._store_generation:
            self._store.reopen()
            self._store_generation = generation

    @contextmanager
    def reading(self) -> Iterator[None]:
        """A consistent, current view for several search calls: no other process commits meanwhile.

        Every search primitive takes it by itself; hold it around several calls (as ``HybridRetriever`` does) so
        that their results come from one generation.
        """
        self._open()
        with self._locks.reading(refresh=self._refresh):
            yield

    def close(self) -> None:
        """Release the manifest file (Chroma's client is shared per process and stays open)."""
        with self._lock:
            if self._manifest is not None:
                self._manifest.close()
            self._manifest = self._store = self._bm25 = None
            self._store_generation = None
            self._locks.close()

    # -- ingestion ----------------------------------------------------------------------------------------------
    def ingest(
        self, paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str], *, show_progress: bool | None = None
    ) -> IngestReport:
        """Add new files, replace changed ones and drop deleted ones (files and folders, recursively).

        Unchanged files are skipped without being read; unreadable or unsupported files are listed in the
        report's ``skipped`` and the rest goes on. A file of any size streams through in pieces of
        ``config.batch_chunks`` chunks (memory stays bounded) and is committed at once; when an ingestion is
        interrupted, the pieces it embedded are kept and the next one embeds only the rest (see ``ingest``).
        ``show_progress``: a progress bar in chunks, with rate and time left; by default when stderr is a terminal.
        """
        from slmkit.retrieval.ingest import ingest
        from slmkit.retrieval.splitting import Splitter

        if isinstance(paths, str | os.PathLike):
            paths = [paths]
        manifest, store = self._open()
        counter, counter_name = self._token_counter()
        with self._locks.writing():
            self._refresh()  # another writer may have committed while this one waited
            store.count()  # connect now: a missing Chroma server should fail before minutes of embedding
            before = manifest.generation
            report = ingest(
                paths,
                manifest=manifest,
                store=store,
                embed=self._embed_texts,
                splitter=Splitter(self.config.chunk_size, self.config.chunk_overlap, counter),
                settings=self.config.splitting_fingerprint(counter_name),
                batch_chunks=self.config.batch_chunks,
                show_progress=sys.stderr.isatty() if show_progress is None else show_progress,
                committing=self._committing,
            )
            if manifest.generation != before:
                manifest.set_meta("embedding", embedding_id(self.embedding))
                self._bm25_index()  # rebuilt now, so the first search after an ingestion is fast
        return report

    def verify(self, *, repair: bool = True, show_progress: bool | None = None) -> VerifyReport:
        """Compare the manifest with Chroma chunk by chunk; with ``repair``, make them agree.

        Chunks Chroma lacks are embedded again from their files (a file that is gone loses its chunks); chunks no
        manifest row lists are deleted; the BM25 index is rebuilt. A damaged manifest is set aside and rebuilt by
        ingesting again every file Chroma holds chunks of. ``slmkit doctor`` runs this.
        """
        from slmkit.retrieval.ingest import verify

        try:
            manifest, store = self._open()
        except CorruptManifestError:
            if not repair:
                raise
            return self._rebuild_manifest(show_progress)
        with self._locks.writing():
            self._refresh()
            with self._committing():
                report = verify(manifest, store, repair=repair)
            if repair and report.damaged_sources:
                redo = self.ingest(report.damaged_sources, show_progress=show_progress)
                report.reingested, report.skipped = redo.added + redo.updated, redo.skipped
            if repair:
                shutil.rmtree(self.folder / "bm25", ignore_errors=True)
                with self._lock:
                    self._bm25 = None
                self._bm25_index()
        return report

    def reembed(
        self, embedding: Embeddings | str | os.PathLike[str], *, show_progress: bool | None = None
    ) -> ReembedReport:
        """Move this knowledge base to another embedder: every chunk embedded again from its stored text, swapped
        in at once (see ``reembed``); from then on it opens only with ``embedding``.

        This object may have been opened with any embedder: the one the knowledge base records is used to open it.
        """
        from slmkit.retrieval.reembed import reembed

        target = resolve_embedding(embedding)
        with self._lock:
            if self._manifest is None:
                self.embedding = resolve_embedding(None, kb_folder=self.folder)
        manifest, store = self._open()
        with self._locks.writing():
            self._refresh()
            words = self._bm25_index()  # the same texts after the swap: their BM25 index carries over
            previous, self.embedding = self.embedding, target  # _embed_texts embeds with self.embedding
            try:
                report = reembed(
                    manifest,
                    store,
                    self._embed_texts,
                    embedding_id(target),
                    committing=self._committing,
                    show_progress=sys.stderr.isatty() if show_progress is None else show_progress,
                )
            except BaseException:
                self.embedding = previous
                raise
            self._bm25_index(carried=words)
        return report

    def _rebuild_manifest(self, show_progress: bool | None) -> VerifyReport:
        from slmkit.retrieval.ingest import VerifyReport
        from slmkit.retrieval.store import ChunkStore

        with self._locks.writing():
            store = ChunkStore(self.name, folder=self.path / "chroma", url=self.chroma_url)
            sources, held = sorted(store.sources()), store.count()
            damaged = self.folder / "manifest.sqlite"
            aside = damaged.with_name(f"manifest.sqlite.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
            for suffix in ("", "-wal", "-shm"):
                if Path(f"{damaged}{suffix}").exists():
                    os.replace(f"{damaged}{suffix}", f"{aside}{suffix}")
            report = VerifyReport(
                manifest_chunks=0, chroma_chunks=held, damaged_sources=sources, manifest_set_aside=str(aside)
            )
            redo = self.ingest(sources, show_progress=show_progress)  # a new manifest: Chroma is emptied first
            report.reingested, report.skipped = redo.added + redo.updated, redo.skipped
        return report

    def _token_counter(self) -> tuple[Any, str]:
        if isinstance(self.embedding, SentenceTransformerEmbeddings):
            return self.embedding.count_tokens, embedding_id(self.embedding)
        from slmkit.core.tokens import ESTIMATE_ENCODING, TiktokenCounter

        return TiktokenCounter().count, ESTIMATE_ENCODING

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        if isinstance(self.embedding, SentenceTransformerEmbeddings):
            return self.embedding.encode(texts)
        return np.asarray(self.embedding.embed_documents(texts), dtype="float32")

    # -- what is in it ------------------------------------------------------------------------------------------
    def chunk_count(self) -> int:
        manifest, _ = self._open()
        return manifest.chunk_count()

    def sources(self) -> list[str]:
        """Paths of the ingested files."""
        manifest, _ = self._open()
        return manifest.source_paths()

    # -- search primitives (used by HybridRetriever; handy for benchmarks) ---------------------------------------
    def embed_query(self, query: str) -> list[float]:
        return list(self.embedding.embed_query(query))

    def bm25_search(self, query: str, n: int, where: dict[str, Any] | None = None) -> list[tuple[str, float]]:
        """Up to ``n`` (chunk id, BM25 score) pairs, best first, restricted to chunks matching ``where``."""
        with self.reading():
            index = self._bm25_index()
            mask = self._mask(where) if where else None
            return index.search(query, n, mask)

    def bm25_scores(self, query: str, ids: list[str]) -> np.ndarray:
        """Exact BM25 scores of the given chunks (0 for unknown ids)."""
        with self.reading():
            return self._bm25_index().score_ids(query, ids)

    def dense_search(self, vector: list[float], n: int, where: dict[str, Any] | None = None) -> list[tuple[str, float]]:
        """Up to ``n`` (chunk id, cosine similarity) pairs, best first."""
        _, store = self._open()
        with self.reading():
            return store.nearest(vector, n, where)

    def fetch(self, ids: list[str]) -> dict[str, Record]:
        """Text, metadata and vector of chunks by id."""
        _, store = self._open()
        with self.reading():
            return store.fetch(ids)

    def vectors(self, ids: list[str]) -> dict[str, np.ndarray]:
        """Stored vectors of chunks by id."""
        if not ids:
            return {}
        _, store = self._open()
        with self.reading():
            return store.vectors(ids)

    def as_retriever(self, **kwargs: Any) -> HybridRetriever:
        """A LangChain retriever over this knowledge base; ``kwargs`` are ``HybridRetriever`` fields."""
        from slmkit.retrieval.retriever import HybridRetriever

        return HybridRetriever(knowledge_base=self, **kwargs)

    @property
    def vectorstore(self) -> Chroma:
        """The Chroma collection as a ``langchain_chroma.Chroma`` (read it; write through ``ingest``).

        It bypasses the knowledge base's locks: while another process ingests, prefer ``as_retriever``."""
        _, store = self._open()
        return store.as_vectorstore(self.embedding)

    # -- BM25 ---------------------------------------------------------------------------------------------------
    def _bm25_index(self, carried: BM25Index | None = None) -> BM25Index:
        """The index for the manifest's current generation: cached, else loaded, else rebuilt and saved.

        ``carried``: an index of the same chunk texts to save under this generation instead of rebuilding it (a
        re-embedding changes the vectors and the generation, not the texts)."""
        from slmkit.retrieval.bm25 import BM25Index

        manifest, _ = self._open()
        with self._lock:
            generation = manifest.generation
            if self._bm25 is not None and self._bm25[0] == generation:
                return self._bm25[1]
            root = self.folder / "bm25"
            name = f"{generation}-k1={self.config.bm25_k1}-b={self.config.bm25_b}"
            target = root / name
            if (target / "ids.json").is_file():
                index = BM25Index.load(target)
            else:
                index = carried if carried is not None else self._build_bm25(manifest)
                scratch = root / f".{name}.{os.getpid()}.tmp"
                index.save(scratch)
                try:
                    os.replace(scratch, target)  # atomic: a reader sees a whole index or none
                except OSError:  # another process saved the same generation first
                    shutil.rmtree(scratch, ignore_errors=True)
            for old in root.iterdir():
                if old.name != name and not old.name.startswith("."):
                    shutil.rmtree(old, ignore_errors=True)
            self._bm25 = (generation, index)
            self._masks.clear()
            return index

    def _build_bm25(self, manifest: Manifest) -> BM25Index:
        from slmkit.retrieval.bm25 import BM25Index

        ids, numbers, vocab = manifest.all_term_ids()
        return BM25Index.build_numbered(ids, numbers, vocab, k1=self.config.bm25_k1, b=self.config.bm25_b)

    def _mask(self, where: dict[str, Any]) -> np.ndarray:
        index = self._bm25_index()
        key = (self._bm25[0] if self._bm25 else 0, json.dumps(where, sort_keys=True))
        if key not in self._masks:
            _, store = self._open()
            if len(self._masks) >= _MASK_CACHE_SIZE:
                self._masks.clear()
            self._masks[key] = index.mask(store.ids(where))
        return self._masks[key]
