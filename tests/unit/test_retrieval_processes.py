"""Several processes on one knowledge base: one writer, many readers, nothing lost, nothing duplicated.

Each writer is a real separate Python process (``subprocess``), as ``slmkit ingest`` is beside a running ``slmkit
serve``; a deterministic fake embedder keeps it fast. Readers run in this process. The checks compare the manifest,
Chroma and BM25 chunk by chunk (``KnowledgeBase.verify``) and against a fresh split of the files on disk.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

from slmkit.retrieval import KnowledgeBase, KnowledgeBaseConfig

SMALL = KnowledgeBaseConfig(chunk_size=40, chunk_overlap=0, batch_chunks=4)

WORKER = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from slmkit.retrieval import KnowledgeBase, KnowledgeBaseConfig
    from slmkit.retrieval.manifest import Manifest
    from slmkit.retrieval.store import ChunkStore

    root, docs, action = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    targets = {"upsert": (ChunkStore, "upsert"), "delete": (ChunkStore, "delete"),
               "commit": (Manifest, "commit"), "clear_pending": (Manifest, "clear_pending")}

    def hook(cls, method, before=None, after=None):  # around the first call only
        original = getattr(cls, method)
        calls = []
        def wrapper(self, *args, **kwargs):
            first = not calls
            calls.append(1)
            if first and before:
                before()
            result = original(self, *args, **kwargs)
            if first and after:
                after()
            return result
        setattr(cls, method, wrapper)

    if action == "pause-at-commit":  # stop before the first manifest commit until the parent says go
        def pause():
            (root / "at-commit").touch()
            deadline = time.monotonic() + 120
            while not (root / "go").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        hook(Manifest, "commit", before=pause)
    elif action.startswith("kill-after-"):
        cls, method = targets[action.removeprefix("kill-after-")]
        hook(cls, method, after=lambda: os.kill(os.getpid(), signal.SIGKILL))

    kb = KnowledgeBase(name="notes", path=root / "kb", embedding=DeterministicFakeEmbedding(size=16),
                       config=KnowledgeBaseConfig(chunk_size=40, chunk_overlap=0, batch_chunks=4))
    report = kb.ingest([docs], show_progress=False)
    print(len(report.added), len(report.updated), len(report.removed), flush=True)
    """
)


def paragraph(word: str, n: int = 3) -> str:
    return " ".join(f"Sentence {i} tells of {word} and nothing else at all." for i in range(n))


def write_files(folder: Path, start: int, stop: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, stop):
        (folder / f"note{i:03d}.md").write_text(f"# Note {i}\n\n{paragraph(f'codeword{i}')}\n")


def make_kb(root: Path) -> KnowledgeBase:
    return KnowledgeBase(name="notes", path=root / "kb", embedding=DeterministicFakeEmbedding(size=16), config=SMALL)


def start_writer(root: Path, docs: Path, action: str = "plain") -> subprocess.Popen[str]:
    script = root / "worker.py"
    script.write_text(WORKER)
    return subprocess.Popen(
        [sys.executable, str(script), str(root), str(docs), action],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def assert_complete(kb: KnowledgeBase, files: int) -> None:
    """Manifest, Chroma and BM25 agree, and every file's codeword is found."""
    report = kb.verify(repair=False)
    assert report.consistent, report
    assert report.manifest_chunks == report.chroma_chunks == kb.chunk_count()
    assert len(kb.sources()) == files
    manifest, _ = kb._open()
    assert set(kb._bm25_index().ids) == set(manifest.chunk_sources())
    assert manifest.pending() == []


def found(kb: KnowledgeBase, i: int, file: int | None = None) -> bool:
    """Whether a search for ``codeword<i>`` finds the file that holds it (``note<file or i>.md``)."""
    docs = kb.as_retriever(k=3, dense_weight=0.0, min_relevance=None, min_top_relevance=None).invoke(f"codeword{i}")
    return any(d.metadata["source"].endswith(f"note{i if file is None else file:03d}.md") for d in docs)


@pytest.mark.timeout(300)
def test_a_reader_opened_during_a_writers_commit_loses_nothing(tmp_path):
    docs = tmp_path / "docs"
    write_files(docs, 0, 12)
    writer = start_writer(tmp_path, docs, "pause-at-commit")
    deadline = time.monotonic() + 120
    while not (tmp_path / "at-commit").exists():
        assert writer.poll() is None, finish(writer)
        assert time.monotonic() < deadline, "the writer never reached its first commit"
        time.sleep(0.05)

    # The writer has put its first batch into Chroma and not yet committed the manifest: the moment a reader used
    # to "reconcile" and delete the writer's chunks. Now the reader leaves them alone and waits for the commit.
    outcome: dict[str, object] = {}

    def read() -> None:
        reader = make_kb(tmp_path)
        outcome["found"] = found(reader, 0)
        outcome["done"] = time.monotonic()

    thread = threading.Thread(target=read)
    thread.start()
    thread.join(1.0)
    assert "done" not in outcome, "the search ran while the writer was between its Chroma write and its commit"
    (tmp_path / "go").touch()
    released = time.monotonic()
    code, out, err = finish(writer)
    thread.join(60)
    assert code == 0, err
    assert out.split() == ["12", "0", "0"]
    assert outcome["done"] >= released  # type: ignore[operator]
    assert outcome["found"] is True
    kb = make_kb(tmp_path)
    assert_complete(kb, 12)
    assert all(found(kb, i) for i in range(12))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("point", ["upsert", "commit", "delete", "clear_pending"])
def test_a_writer_killed_at_a_commit_point_loses_and_duplicates_nothing(tmp_path, point):
    docs = tmp_path / "docs"
    write_files(docs, 0, 8)
    assert finish(start_writer(tmp_path, docs))[0] == 0
    (docs / "note001.md").write_text(f"# Note 1\n\n{paragraph('codeword1', 1)} Now also of codeword101.\n")
    (docs / "note002.md").unlink()
    write_files(docs, 8, 14)

    code, _, _ = finish(start_writer(tmp_path, docs, f"kill-after-{point}"))
    assert code == -9  # it really died there

    reader = make_kb(tmp_path)  # opened after the writer died: the lock is free, so it reconciles
    report = reader.verify(repair=False)
    assert report.consistent, report
    code, _, err = finish(start_writer(tmp_path, docs))
    assert code == 0, err
    kb = make_kb(tmp_path)
    assert_complete(kb, 13)
    assert found(kb, 101, file=1)
    assert found(kb, 13)
    assert not found(kb, 2)


@pytest.mark.timeout(300)
def test_searches_during_another_process_ingestion_never_fail_and_see_every_new_file(tmp_path):
    docs = tmp_path / "docs"
    write_files(docs, 0, 5)
    reader = make_kb(tmp_path)
    reader.ingest([docs], show_progress=False)
    write_files(docs, 5, 60)
    writer = start_writer(tmp_path, docs)
    searches, errors = 0, []
    while writer.poll() is None:
        try:
            reader.as_retriever(k=3).invoke(f"codeword{searches % 60}")
        except Exception as exc:  # every failure is the finding
            errors.append(repr(exc))
        searches += 1
    code, _, err = finish(writer)
    assert code == 0, err
    assert errors == []
    assert searches > 5
    assert all(found(reader, i) for i in range(60))  # the same reader object: no restart
    assert_complete(reader, 60)


@pytest.mark.timeout(300)
def test_two_writers_take_turns(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    write_files(first, 0, 20)
    write_files(second, 20, 40)
    writers = [start_writer(tmp_path, first), start_writer(tmp_path, second)]
    results = [finish(w) for w in writers]
    assert [r[0] for r in results] == [0, 0], results
    assert sorted(r[1].split()[0] for r in results) == ["20", "20"]
    kb = make_kb(tmp_path)
    assert_complete(kb, 40)
    assert all(found(kb, i) for i in (0, 19, 20, 39))


def test_a_lost_chroma_folder_is_rebuilt_by_the_next_ingestion(tmp_path):
    import shutil

    docs = tmp_path / "docs"
    write_files(docs, 0, 6)
    make_kb(tmp_path).ingest([docs], show_progress=False)
    shutil.rmtree(tmp_path / "kb" / "chroma")
    kb = make_kb(tmp_path)
    report = kb.ingest([docs], show_progress=False)
    assert sorted(Path(p).name for p in report.added) == [f"note{i:03d}.md" for i in range(6)]
    assert report.unchanged == 0
    assert_complete(kb, 6)
    assert all(found(kb, i) for i in range(6))


def test_verify_repairs_missing_and_orphan_chunks(tmp_path):
    docs = tmp_path / "docs"
    write_files(docs, 0, 6)
    kb = make_kb(tmp_path)
    kb.ingest([docs], show_progress=False)
    manifest, store = kb._open()
    lost = sorted(manifest.chunk_metadata(str(docs / "note003.md")))[:1]
    store.delete(lost)
    store.upsert(["orphan"], DeterministicFakeEmbedding(size=16).embed_documents(["x"]), ["x"], [{"source": "gone"}])
    report = kb.verify(repair=True)
    assert (report.missing, report.orphans) == (1, 1)
    assert [Path(p).name for p in report.damaged_sources] == ["note003.md"]
    assert [Path(p).name for p in report.reingested] == ["note003.md"]
    assert kb.verify(repair=False).consistent
    assert_complete(kb, 6)
