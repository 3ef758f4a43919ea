"""The dense half of a knowledge base: one Chroma collection of chunk texts, metadata and vectors.

Embedded ``PersistentClient`` in a folder by default; a Chroma server (``chroma run``) over HTTP when several
processes or machines share the vectors. Vectors are always computed by slmkit and passed in, so Chroma's
own default embedding function (which downloads a model) is never used. The collection uses cosine distance;
similarities returned here are ``1 - distance``.

``ChunkStore`` does the few operations ingestion and search need (upsert, update metadata, delete, id lookups,
nearest neighbours, fetch by id), in batches no larger than the client accepts. ``as_vectorstore`` gives the
same collection as a ``langchain_chroma.Chroma`` for LangChain code that wants a plain vector store.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from slmkit.core.errors import ConfigurationError, MissingDependencyError, StoreConnectionError

if TYPE_CHECKING:
    import numpy as np
    from langchain_chroma import Chroma
    from langchain_core.embeddings import Embeddings

__all__ = ["ChunkStore", "Record"]

Record = tuple[str, dict[str, Any], "np.ndarray"]
"""A stored chunk: text, metadata, vector."""


def _chromadb() -> Any:
    try:
        import chromadb
    except ImportError as exc:
        raise MissingDependencyError("chromadb", extra="retrieval", purpose="the knowledge base") from exc
    return chromadb


def _settings() -> Any:
    from chromadb.config import Settings

    return Settings(anonymized_telemetry=False)  # telemetry would try the network on every client start


def _forget_cached_client(folder: Path) -> None:
    """Make the next embedded client read ``folder`` afresh.

    The embedded client keeps its vector index in memory and never notices another process's writes (searches then
    miss new chunks, or name deleted ones: "Error finding id"), and Chroma hands every client of a folder the one
    system it cached for it in this process. Dropping that entry gives a new client a fresh view; clients that
    other stores hold keep working on what they had loaded, and are freed with them.
    """
    from chromadb.api.shared_system_client import SharedSystemClient

    SharedSystemClient._identifier_to_system.pop(str(folder), None)
    SharedSystemClient._identifier_to_refcount.pop(str(folder), None)


class ChunkStore:
    """A Chroma collection, created on first use.

    ``folder`` is used for the embedded client; ``url`` (``http://host:port``) selects a Chroma server instead.
    """

    def __init__(self, name: str, *, folder: Path, url: str | None = None) -> None:
        self.name = name
        self.folder = folder
        self.url = url
        self._client: Any = None
        self._collection: Any = None
        self._batch_size: int | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    @property
    def collection(self) -> Any:
        if self._collection is None:
            client = self.client
            with self._lock:
                self._collection = client.get_or_create_collection(
                    self.name, embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
                )
        return self._collection

    def reopen(self) -> None:
        """Drop the connection, so that the next use sees what other processes committed since (see ``_connect``).

        A Chroma server is always current: only the collection is looked up again (it may have been replaced)."""
        with self._lock:
            self._collection = None
            if self.url is None:
                self._client = None

    def _connect(self) -> Any:
        chromadb = _chromadb()
        if self.url is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            _forget_cached_client(self.folder)
            return chromadb.PersistentClient(path=str(self.folder), settings=_settings())
        return self._connect_server(chromadb, self.url)

    def _connect_server(self, chromadb: Any, url: str) -> Any:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigurationError(f"chroma_url must look like http://host:port, not {self.url!r}.")
        try:
            client = chromadb.HttpClient(
                host=parsed.hostname,
                port=parsed.port or (443 if parsed.scheme == "https" else 8000),
                ssl=parsed.scheme == "https",
                settings=_settings(),
            )
            client.heartbeat()
        except Exception as exc:  # chromadb raises ValueError or httpx errors, depending on version
            raise StoreConnectionError(
                f"Cannot reach the Chroma server at {self.url} ({exc}). Start one with "
                f"`chroma run --path DIR --host {parsed.hostname} --port {parsed.port or 8000}`, "
                "or drop chroma_url to use the embedded store."
            ) from exc
        return client

    def _slices(self, n: int) -> Iterator[slice]:
        if self._batch_size is None:  # one round trip to a server, so asked once
            self._batch_size = max(1, int(self.client.get_max_batch_size()))
        for start in range(0, n, self._batch_size):
            yield slice(start, start + self._batch_size)

    def count(self) -> int:
        return int(self.collection.count())

    def upsert(
        self, ids: Sequence[str], vectors: np.ndarray, texts: Sequence[str], metadatas: Sequence[dict[str, Any]]
    ) -> None:
        for part in self._slices(len(ids)):
            self.collection.upsert(
                ids=list(ids[part]),
                embeddings=vectors[part],
                documents=list(texts[part]),
                metadatas=list(metadatas[part]),
            )

    def update_metadata(self, ids: Sequence[str], metadatas: Sequence[dict[str, Any]]) -> None:
        for part in self._slices(len(ids)):
            self.collection.update(ids=list(ids[part]), metadatas=list(metadatas[part]))

    def delete(self, ids: Sequence[str]) -> None:
        for part in self._slices(len(ids)):
            self.collection.delete(ids=list(ids[part]))

    def ids(self, where: dict[str, Any] | None = None) -> set[str]:
        """Ids of the chunks matching a Chroma ``where`` filter (all chunks when ``None``)."""
        return set(self.collection.get(where=where, include=[])["ids"])

    def sources(self) -> set[str]:
        """The ``source`` of every chunk: what a lost manifest is rebuilt from."""
        metadatas = self.collection.get(include=["metadatas"])["metadatas"] or []
        return {str(m["source"]) for m in metadatas if m and "source" in m}

    def nearest(self, vector: Sequence[float], n: int, where: dict[str, Any] | None = None) -> list[tuple[str, float]]:
        """Up to ``n`` (chunk id, cosine similarity) pairs, best first."""
        if n <= 0:
            return []
        result = self.collection.query(query_embeddings=[list(vector)], n_results=n, where=where, include=["distances"])
        return [(i, 1.0 - float(d)) for i, d in zip(result["ids"][0], result["distances"][0], strict=True)]

    def fetch(self, ids: Sequence[str]) -> dict[str, Record]:
        """Text, metadata and vector of each id that exists."""
        if not ids:
            return {}
        got = self.collection.get(ids=list(ids), include=["documents", "metadatas", "embeddings"])
        return {
            i: (text, dict(meta or {}), vector)
            for i, text, meta, vector in zip(
                got["ids"], got["documents"], got["metadatas"], got["embeddings"], strict=True
            )
        }

    def vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vector of each id that exists."""
        if not ids:
            return {}
        got = self.collection.get(ids=list(ids), include=["embeddings"])
        return dict(zip(got["ids"], got["embeddings"], strict=True))

    def as_vectorstore(self, embedding: Embeddings) -> Chroma:
        try:
            from langchain_chroma import Chroma
        except ImportError as exc:
            raise MissingDependencyError(
                "langchain-chroma", extra="retrieval", purpose="the vector store view"
            ) from exc
        return Chroma(collection_name=self.name, client=self.client, embedding_function=embedding)
