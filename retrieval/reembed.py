"""Moving a knowledge base to another embedder: every chunk embedded again from the text Chroma holds.

    chunks (id, text, metadata), a page at a time -> the new embedder -> a staging collection "<name>.reembed"
        (dropped first if an interrupted run left one; progress in chunks)
    -> under the commit lock: the old collection dropped, the staging one renamed to the knowledge base's name,
       the manifest records the new embedder and a new generation (so readers in other processes reopen Chroma)

The files are not read again and the chunks stay as they are (the BM25 index too). An interruption before the swap
leaves the knowledge base as it was; ``slmkit doctor`` repairs one between the drop and the rename.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
from pydantic import BaseModel

from slmkit.core.errors import KnowledgeBaseError
from slmkit.retrieval.manifest import Manifest
from slmkit.retrieval.store import ChunkStore

__all__ = ["ReembedReport", "reembed"]

STAGING_SUFFIX = ".reembed"


class ReembedReport(BaseModel):
    """What ``KnowledgeBase.reembed`` did."""

    chunks: int
    embedder_before: str | None
    embedder_after: str
    seconds: float


def reembed(
    manifest: Manifest,
    store: ChunkStore,
    embed: Callable[[list[str]], np.ndarray],
    embedder_after: str,
    *,
    committing: Callable[[], AbstractContextManager[None]],
    show_progress: bool,
    page: int = 256,
) -> ReembedReport:
    """Embed every chunk of ``store`` with ``embed`` into a staging collection, then swap it in (see module)."""
    started = time.perf_counter()
    before = manifest.get_meta("embedding")
    staging = ChunkStore(store.name + STAGING_SUFFIX, folder=store.folder, url=store.url)
    _drop(staging)
    total = store.count()
    with _progress(total, show_progress) as bar:
        for ids, texts, metadatas in _pages(store, page):
            staging.upsert(ids, embed(texts), texts, metadatas)
            bar.update(len(ids))
    if staging.count() != total:
        raise KnowledgeBaseError(
            f"Re-embedding wrote {staging.count()} of {total} chunks to the staging collection; "
            "the knowledge base is unchanged. Run the command again."
        )
    with committing():
        _drop(store)
        staging.collection.modify(name=store.name)
        manifest.record_embedder(embedder_after)
        store.reopen()
    return ReembedReport(
        chunks=total,
        embedder_before=before,
        embedder_after=embedder_after,
        seconds=round(time.perf_counter() - started, 2),
    )


def _pages(store: ChunkStore, page: int) -> Iterator[tuple[list[str], list[str], list[dict[str, Any]]]]:
    offset = 0
    while True:
        got = store.collection.get(include=["documents", "metadatas"], limit=page, offset=offset)
        if not got["ids"]:
            return
        yield list(got["ids"]), list(got["documents"]), [dict(m or {}) for m in got["metadatas"]]
        offset += len(got["ids"])


def _drop(store: ChunkStore) -> None:
    """Delete the store's collection if it exists (Chroma raises for a missing one)."""
    if store.name in {getattr(c, "name", c) for c in store.client.list_collections()}:
        store.client.delete_collection(store.name)
    store.reopen()


def _progress(total: int, show: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="re-embedding", unit="chunk", leave=False, disable=not show)
