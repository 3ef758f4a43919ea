"""Big files stream through ingestion: split and embedded in pieces, staged so an interruption keeps them, committed
at once, with a progress bar in chunks; the splitter and the text reader hold a bounded amount of text.

Fast and offline: a deterministic fake embedder, a real embedded Chroma and manifest in ``tmp_path``. "Big" here is
made small: ``STREAM_BYTES`` is lowered so that a few kilobytes stream, read in blocks of a few dozen bytes.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import random
import re
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding

import slmkit.retrieval.ingest as ingest_module
from slmkit.core.errors import DocumentLoadError, MissingDependencyError
from slmkit.retrieval import KnowledgeBase, KnowledgeBaseConfig
from slmkit.retrieval.ingest import ChunkIds, chunk_ids
from slmkit.retrieval.loaders import is_supported, load_file, stream_text
from slmkit.retrieval.manifest import Manifest
from slmkit.retrieval.splitting import Splitter
from slmkit.retrieval.store import ChunkStore

CONFIG = KnowledgeBaseConfig(chunk_size=40, chunk_overlap=0, batch_chunks=8)
WORDS = ["river", "stone", "apple", "engine", "violin", "comet", "bread", "lantern", "harbor", "meadow", "quartz"]


class CrashError(Exception):
    pass


def sentences(seed: int, n: int) -> str:
    """``n`` sentences numbered ``seed-i`` (distinct seeds: no two chunks share a text)."""
    rng = random.Random(seed)
    return " ".join(f"Note {seed}-{i} says {' '.join(rng.choices(WORDS, k=6))}." for i in range(n))


def big_text(seed: int = 0, paragraphs: int = 24) -> str:
    return "\n\n".join(sentences(seed * 1000 + p, 4) for p in range(paragraphs)) + "\n"


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text(f"# Alpha\n\n{sentences(100_001, 3)}\n")
    (folder / "big.txt").write_text(big_text())
    (folder / "c.txt").write_text(sentences(300_003, 3))
    return folder


@pytest.fixture(autouse=True)
def stream_small_files(monkeypatch):
    """Files above 1 kB stream, read 61 bytes at a time (the real figures: 1 MiB and 1 MiB)."""
    monkeypatch.setattr(ingest_module, "STREAM_BYTES", 1000)
    monkeypatch.setattr(ingest_module, "stream_text", functools.partial(stream_text, block_bytes=61))


def make_kb(root: Path) -> KnowledgeBase:
    return KnowledgeBase(name="notes", path=root / "kb", embedding=DeterministicFakeEmbedding(size=16), config=CONFIG)


def split_ids(kb: KnowledgeBase, path: Path) -> list[str]:
    """The chunk ids of ``path`` loaded whole and split from scratch."""
    counter, _ = kb._token_counter()
    return chunk_ids(Splitter(kb.config.chunk_size, kb.config.chunk_overlap, counter).split(load_file(path)))


def assert_consistent(kb: KnowledgeBase, folder: Path | None = None) -> None:
    """Chroma, manifest and BM25 hold the same chunks, nothing twice, nothing pending (and ``folder``'s chunks)."""
    report = kb.verify(repair=False)
    assert report.consistent, report
    manifest, store = kb._open()
    listed = manifest.chunk_sources()
    assert report.manifest_chunks == report.chroma_chunks == len(listed) == len(store.ids())
    assert set(kb._bm25_index().ids) == set(listed)
    assert manifest.pending() == []
    if folder is not None:
        expected = [i for p in sorted(folder.iterdir()) if is_supported(p) for i in split_ids(kb, p)]
        assert len(expected) == len(set(expected))
        assert set(listed) == set(expected)


def counting(
    kb: KnowledgeBase, monkeypatch, *, fail_on_call: int | None = None, sizes: list[int] | None = None
) -> list[str]:
    """Record every text ``kb`` embeds (and in ``sizes``, how many per call); raise ``CrashError`` on the
    ``fail_on_call``-th embedding call."""
    embedded: list[str] = []
    calls = {"n": 0}
    real = kb._embed_texts

    def embed(texts: list[str]):
        calls["n"] += 1
        if fail_on_call is not None and calls["n"] >= fail_on_call:
            raise CrashError("interrupted while embedding")
        embedded.extend(texts)
        if sizes is not None:
            sizes.append(len(texts))
        return real(texts)

    monkeypatch.setattr(kb, "_embed_texts", embed)
    return embedded


def crashed_while_embedding(tmp_path: Path, docs: Path, monkeypatch) -> KnowledgeBase:
    """A knowledge base whose ingestion of ``docs`` crashed at the third embedding call (pieces of the big file
    already staged); the crash is undone on the embedder, so the next ingestion runs as usual."""
    kb = make_kb(tmp_path)
    with monkeypatch.context() as patch:
        counting(kb, patch, fail_on_call=3)
        with pytest.raises(CrashError):
            kb.ingest([docs])
    return kb


def staged(kb: KnowledgeBase) -> int:
    manifest, _ = kb._open()
    return manifest.staged_count()


# -- a big file is committed at once ----------------------------------------------------------------------------
def test_a_big_file_is_staged_in_pieces_and_committed_at_once(tmp_path, docs, monkeypatch):
    kb = make_kb(tmp_path)
    big = str(docs / "big.txt")
    total = len(split_ids(kb, docs / "big.txt"))
    assert total > 4 * CONFIG.batch_chunks
    seen: list[tuple[int, int, int]] = []  # per staged piece: big's chunks in Chroma, in the manifest, staged
    real_stage = ingest_module._Ingestion.stage

    def stage(self, todo, piece, progress):
        real_stage(self, todo, piece, progress)
        manifest, store = kb._open()
        seen.append((len(store.ids(where={"source": big})), len(manifest.chunk_metadata(big)), staged(kb)))

    committed: list[list[str]] = []
    real_commit = Manifest.commit

    def commit(self, removed=(), *, staged=(), run=""):
        staged = list(staged)
        committed.append([r.path for r in staged])
        return real_commit(self, removed, staged=staged, run=run)

    monkeypatch.setattr(ingest_module._Ingestion, "stage", stage)
    monkeypatch.setattr(Manifest, "commit", commit)
    sizes: list[int] = []
    embedded = counting(kb, monkeypatch, sizes=sizes)
    report = kb.ingest([docs])

    assert sorted(report.added) == sorted(str(p) for p in docs.iterdir())
    assert len(seen) >= 4  # one piece of about batch_chunks chunks at a time
    assert max(sizes) <= CONFIG.batch_chunks < total  # never the whole file in one embedding call
    staged_before_commit = [n for in_chroma, listed, n in seen if in_chroma == listed == 0]
    assert len(staged_before_commit) >= 4  # staged, but neither in Chroma nor listed: searches cannot see it
    assert max(staged_before_commit) >= total  # every piece of it staged before its one commit
    assert sum(big in paths for paths in committed) == 1
    assert len(embedded) == report.chunks_embedded == kb.chunk_count()
    assert staged(kb) == 0
    assert_consistent(kb, docs)  # the streamed file was split exactly as if it had been loaded whole


def test_a_streamed_markdown_file_keeps_its_headings_across_blocks(tmp_path, docs):
    text = "".join(
        f"# Part {i}\n\n{sentences(50 + i, 4)}\n\n## Detail {i}\n\n{sentences(80 + i, 5)}\n\n" for i in range(8)
    )
    (docs / "manual.md").write_text("```\n# not a heading\n```\n" + text)
    kb = make_kb(tmp_path)
    kb.ingest([docs])
    assert_consistent(kb, docs)
    _, store = kb._open()
    got = store.collection.get(where={"source": str(docs / "manual.md")}, include=["metadatas"])["metadatas"]
    assert {m.get("headings") for m in got} >= {"Part 3", "Part 3 > Detail 3", "Part 7 > Detail 7"}


# -- an interruption keeps what was embedded --------------------------------------------------------------------
def test_an_interrupted_big_file_resumes_and_embeds_only_the_missing_chunks(tmp_path, docs, monkeypatch):
    kb = make_kb(tmp_path)
    with monkeypatch.context() as patch:
        first = counting(kb, patch, fail_on_call=4)  # three pieces embedded, the fourth interrupted
        with pytest.raises(CrashError):
            kb.ingest([docs])
    kept = staged(kb)
    assert kept > 0
    reopened = make_kb(tmp_path)  # as a new process would
    assert_consistent(reopened)
    assert reopened.sources() == [str(docs / "a.md")]  # the big file is not half there
    assert staged(reopened) == kept

    second = counting(reopened, monkeypatch)
    report = reopened.ingest([docs])
    assert report.chunks_resumed > 0
    assert set(first) & set(second) == set()  # nothing embedded twice
    big_and_c = len(split_ids(reopened, docs / "big.txt")) + len(split_ids(reopened, docs / "c.txt"))
    assert report.chunks_resumed + report.chunks_embedded == big_and_c
    assert len(second) == report.chunks_embedded
    assert sorted(report.added) == [str(docs / "big.txt"), str(docs / "c.txt")]
    assert staged(reopened) == 0
    assert_consistent(reopened, docs)


KILLED_WRITER = textwrap.dedent(
    """
    import functools, os, signal, sys
    from pathlib import Path
    from langchain_core.embeddings import DeterministicFakeEmbedding
    import slmkit.retrieval.ingest as ingest_module
    from slmkit.retrieval import KnowledgeBase, KnowledgeBaseConfig
    from slmkit.retrieval.loaders import stream_text
    from slmkit.retrieval.manifest import Manifest
    from slmkit.retrieval.store import ChunkStore

    root, docs, point, calls = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    ingest_module.STREAM_BYTES = 1000
    ingest_module.stream_text = functools.partial(stream_text, block_bytes=61)
    ingest_module._UPSERT_ROWS = 10
    cls, method = {"stage": (Manifest, "stage"), "upsert": (ChunkStore, "upsert")}[point]
    real = getattr(cls, method)
    done = []

    def killing(self, *args, **kwargs):
        result = real(self, *args, **kwargs)
        done.append(1)
        if len(done) == calls:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(cls, method, killing)
    config = KnowledgeBaseConfig(chunk_size=40, chunk_overlap=0, batch_chunks=8)
    kb = KnowledgeBase(name="notes", path=root / "kb", embedding=DeterministicFakeEmbedding(size=16), config=config)
    kb.ingest([docs], show_progress=False)
    """
)


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("point", "calls"),
    [
        ("stage", 3),  # SIGKILL after the third piece was staged: a.md committed, big.txt half embedded
        ("upsert", 2),  # SIGKILL in big.txt's switch-over, after its first Chroma upsert (a.md's was the first)
    ],
)
def test_a_writer_killed_mid_file_keeps_its_pieces_and_the_next_run_finishes_it(
    tmp_path, docs, monkeypatch, point, calls
):
    script = tmp_path / "writer.py"
    script.write_text(KILLED_WRITER)
    killed = subprocess.run(
        [sys.executable, str(script), str(tmp_path), str(docs), point, str(calls)], capture_output=True, timeout=240
    )
    assert killed.returncode == -9, killed.stderr  # it really died there

    kb = make_kb(tmp_path)  # opened after the writer died: the lock is free, so it reconciles
    assert_consistent(kb)  # what doctor checks: nothing of the half-written switch-over is left in Chroma
    assert kb.sources() == [str(docs / "a.md")]  # committed before the kill; big.txt not half there
    manifest, _ = kb._open()
    with manifest._lock:
        kept = manifest._db.execute("SELECT count(*) FROM staged WHERE vector IS NOT NULL").fetchone()[0]
    assert kept >= 2 * CONFIG.batch_chunks - 2  # the embedded pieces survived the kill
    assert kb.verify(repair=False).staged_chunks == staged(kb) >= kept  # doctor tells of them

    embedded = counting(kb, monkeypatch)
    report = kb.ingest([docs])
    assert report.chunks_resumed == kept  # none of them embedded again
    todo = len(split_ids(kb, docs / "big.txt")) + len(split_ids(kb, docs / "c.txt"))
    assert report.chunks_embedded == len(embedded) == todo - kept
    assert sorted(report.added) == [str(docs / "big.txt"), str(docs / "c.txt")]
    assert staged(kb) == 0
    assert_consistent(kb, docs)  # every chunk once, in Chroma, the manifest and BM25


@pytest.mark.parametrize(
    ("cls", "method", "after"),
    [
        (ChunkStore, "upsert", 2),  # the big file's switch-over half-written in Chroma
        (Manifest, "commit", 0),  # its chunks in Chroma, the manifest not switched over
        (ChunkStore, "delete", 0),  # switched over, old chunks still in Chroma
    ],
)
def test_a_switch_over_interrupted_anywhere_embeds_nothing_again(tmp_path, docs, monkeypatch, cls, method, after):
    monkeypatch.setattr(ingest_module, "_UPSERT_ROWS", 10)  # a switch-over writes Chroma in several calls
    kb = make_kb(tmp_path)
    kb.ingest([docs])
    (docs / "big.txt").write_text(big_text(seed=7))  # a new version: every chunk new
    real = getattr(cls, method)
    calls = {"n": 0}

    def crash(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > after:
            raise CrashError(f"{method} interrupted")
        return real(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(cls, method, crash)
        first = counting(kb, patch)
        with pytest.raises(CrashError):
            kb.ingest([docs])
    reopened = make_kb(tmp_path)  # reconciles what the crash left in Chroma; staged rows stay
    assert_consistent(reopened)
    again = counting(reopened, monkeypatch)
    report = reopened.ingest([docs])
    assert again == []
    assert report.chunks_embedded == 0
    switched = method == "delete"  # the crash came after the manifest commit: nothing is left to do
    assert report.chunks_resumed == (0 if switched else len(first))
    assert staged(reopened) == 0
    assert_consistent(reopened, docs)


def test_a_changed_big_file_drops_its_staged_chunks(tmp_path, docs, monkeypatch):
    kb = crashed_while_embedding(tmp_path, docs, monkeypatch)
    assert staged(kb) > 0
    path = docs / "big.txt"
    path.write_text(big_text(seed=0) + sentences(99, 2))  # the same text and more: another SHA-256
    again = make_kb(tmp_path)
    embedded = counting(again, monkeypatch)
    report = again.ingest([docs])
    assert report.chunks_resumed == 0  # staged rows belong to a content, not to a name
    assert (
        len(embedded) == report.chunks_embedded == len(split_ids(again, path)) + len(split_ids(again, docs / "c.txt"))
    )
    assert staged(again) == 0
    assert_consistent(again, docs)


def test_staged_chunks_of_a_vanished_file_are_dropped_and_others_kept_until_looked_at(tmp_path, docs, monkeypatch):
    kb = crashed_while_embedding(tmp_path, docs, monkeypatch)
    kept = staged(kb)
    assert kept > 0
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.txt").write_text(sentences(500_005, 3))
    kb = make_kb(tmp_path)
    kb.ingest([other])  # big.txt is not looked at: its staged chunks wait for it
    assert staged(kb) == kept
    (docs / "big.txt").unlink()
    report = kb.ingest([docs])
    assert staged(kb) == 0
    assert report.chunks_resumed == 0
    assert_consistent(kb)
    assert sorted(Path(s).name for s in kb.sources()) == ["a.md", "c.txt", "x.txt"]


def test_an_unchanged_file_drops_staged_chunks_of_another_content(tmp_path, docs, monkeypatch):
    kb = make_kb(tmp_path)
    kb.ingest([docs])
    path = docs / "big.txt"
    original = path.read_text()
    path.write_text(big_text(seed=3))
    with monkeypatch.context() as patch:
        counting(kb, patch, fail_on_call=2)
        with pytest.raises(CrashError):
            kb.ingest([docs])
    assert staged(kb) > 0
    path.write_text(original)  # back to the committed version
    report = make_kb(tmp_path).ingest([docs])
    assert (report.unchanged, report.chunks_embedded) == (3, 0)
    assert staged(make_kb(tmp_path)) == 0
    assert_consistent(make_kb(tmp_path), docs)


def test_a_failure_while_splitting_is_raised_and_leaves_the_kb_consistent(tmp_path, docs, monkeypatch):
    real_load = ingest_module.load_file

    def load(path):
        if path.name == "c.txt":
            raise MissingDependencyError("some-parser", extra="retrieval", purpose="this file")
        return real_load(path)

    monkeypatch.setattr(ingest_module, "load_file", load)
    with pytest.raises(MissingDependencyError):
        make_kb(tmp_path).ingest([docs])
    assert_consistent(make_kb(tmp_path))


def test_a_big_file_that_changes_while_streamed_is_skipped_then_picked_up(tmp_path, docs, monkeypatch):
    path = docs / "big.txt"
    real_stream = ingest_module.stream_text

    def stream_while_written(file, **kwargs):
        metadata, blocks = real_stream(file, **kwargs)

        def written_meanwhile():
            for n, block in enumerate(blocks):
                if n == 3:
                    with path.open("a") as fh:
                        fh.write(" One more sentence arrives late.")
                yield block

        return metadata, written_meanwhile()

    monkeypatch.setattr(ingest_module, "stream_text", stream_while_written)
    kb = make_kb(tmp_path)
    report = kb.ingest([docs])
    [skipped] = report.skipped
    assert (skipped.path, skipped.kind) == (str(path), "unreadable")
    assert "changed while it was read" in skipped.reason
    assert sorted(report.added) == [str(docs / "a.md"), str(docs / "c.txt")]
    assert_consistent(kb)
    monkeypatch.undo()
    assert make_kb(tmp_path).ingest([docs]).added == [str(path)]
    assert_consistent(make_kb(tmp_path), docs)


# -- progress ---------------------------------------------------------------------------------------------------
def test_progress_counts_chunks_with_rate_and_files(tmp_path, docs, capsys):
    kb = make_kb(tmp_path)
    kb.ingest([docs], show_progress=True)
    err = capsys.readouterr().err
    total = kb.chunk_count()
    assert "ingesting" in err
    assert f"{total}/{total} [" in err  # the estimate from bytes ends as the exact count
    assert "chunk/s" in err
    assert "3/3 files" in err


# -- the splitter and the reader hold a bounded amount of text --------------------------------------------------
def test_streamed_blocks_split_exactly_like_the_whole_text():
    rng = random.Random(5)

    def count(text: str) -> int:
        return len(text.split())

    for trial in range(60):
        parts = []
        for _ in range(rng.randint(1, 30)):
            kind = rng.random()
            if kind < 0.15:
                parts.append("#" * rng.randint(1, 3) + " " + rng.choice(WORDS))
            elif kind < 0.2:
                parts.append("```")
            else:
                parts.append(sentences(trial * 100 + len(parts), rng.randint(1, 12)))
        text = rng.choice(["\n\n", "\n"]).join(parts)
        metadata = {"source": "/x", "format": rng.choice(["text", "markdown"])}
        splitter = Splitter(24, 4, count, window=rng.randint(60, 600))
        whole = splitter.split_one(Document(page_content=text, metadata=metadata))
        at, blocks = 0, []
        while at < len(text):
            step = rng.randint(1, 90)
            blocks.append(text[at : at + step])
            at += step
        streamed = list(splitter.iter_split(blocks, metadata))
        assert [(c.page_content, c.metadata) for c in streamed] == [(c.page_content, c.metadata) for c in whole]
        for chunk in whole:
            start, end = chunk.metadata["start_index"], chunk.metadata["end_index"]
            header = chunk.metadata.get("headings")
            assert text[start:end] == (chunk.page_content[len(header) + 2 :] if header else chunk.page_content)
            assert chunk.metadata["start_line"] == text.count("\n", 0, start) + 1


def test_splitting_a_long_stream_holds_about_one_window():
    window = 64 * 1024
    paragraph = sentences(0, 40) + "\n\n"
    blocks = (paragraph for _ in range(4_000_000 // len(paragraph)))  # 4 MB of text, never joined
    splitter = Splitter(64, 8, lambda text: len(text) // 4, window=window)
    tracemalloc.start()
    try:
        chunks = sum(1 for _ in splitter.iter_split(blocks, {"source": "/big.txt", "format": "text"}))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert chunks > 10_000
    assert peak < 12 * window  # the window, its pieces and one chunk list: not the 4 MB


def test_stream_text_reads_what_load_file_reads(tmp_path):
    rng = random.Random(3)
    pieces = [b"abc ", b"\r\n", b"\r", b"\n", "\u00e9".encode(), "\u65e5\u672c".encode(), b"\x93q\x94", b"\xff"]
    for trial in range(300):
        data = b"".join(rng.choices(pieces, k=rng.randint(0, 40)))
        if rng.random() < 0.2:
            data = b"\xef\xbb\xbf" + data
        path = tmp_path / f"t{trial}.{rng.choice(['txt', 'md'])}"
        path.write_bytes(data)
        metadata, blocks = stream_text(path, block_bytes=rng.randint(1, 7))
        [doc] = load_file(path)
        assert "".join(blocks) == doc.page_content
        assert metadata == doc.metadata


def test_stream_text_refuses_binary_files_like_load_file(tmp_path):
    path = tmp_path / "blob.txt"
    path.write_bytes(b"text first, then " + b"\x00" * 10)
    with pytest.raises(DocumentLoadError, match="looks binary"):
        "".join(stream_text(path, block_bytes=4)[1])


def test_chunk_ids_are_those_of_earlier_versions():
    """Ids must not change with the streaming rewrite: existing knowledge bases would embed everything again."""
    chunks = [
        Document(page_content=text, metadata={"source": "/d.pdf", "page": page})
        for text, page in [("same", 1), ("same", 1), ("other", 1), ("same", 2), ("same", 1)]
    ]
    seen: dict[tuple[str, object, str], int] = {}
    old = []
    for chunk in chunks:
        key = (str(chunk.metadata["source"]), chunk.metadata.get("page"), chunk.page_content)
        occurrence = seen[key] = seen.get(key, -1) + 1
        raw = "\x1f".join((key[0], str(key[1]), str(occurrence), key[2]))
        old.append(hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:32])
    assert chunk_ids(chunks) == old
    ids = ChunkIds()
    assert [ids(c) for c in chunks] == old
    assert len(set(old)) == len(old)


def test_the_compact_bm25_rebuild_scores_like_the_term_lists(tmp_path, docs):
    from slmkit.retrieval.bm25 import BM25Index

    kb = make_kb(tmp_path)
    kb.ingest([docs])
    manifest, _ = kb._open()
    compact = kb._build_bm25(manifest)
    ids, chunk_terms = manifest.all_terms()
    plain = BM25Index.build(ids, chunk_terms, k1=kb.config.bm25_k1, b=kb.config.bm25_b)
    assert compact.ids == plain.ids
    for query in ["river stone", "Note 7 says apple", "harbor meadow quartz", "nothing matches zzz"]:
        assert compact.scores(query).tolist() == pytest.approx(plain.scores(query).tolist())


@pytest.mark.parametrize("made_before_auto_vacuum", [False, True])
def test_the_room_of_committed_staged_rows_is_given_back(tmp_path, docs, monkeypatch, made_before_auto_vacuum):
    import sqlite3

    if made_before_auto_vacuum:  # a manifest file from an earlier slmkit: auto-vacuum off
        (tmp_path / "kb" / "notes").mkdir(parents=True)
        with contextlib.closing(sqlite3.connect(tmp_path / "kb" / "notes" / "manifest.sqlite")) as db:
            db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    monkeypatch.setattr(ingest_module, "_RECLAIM_BYTES", 1)
    kb = make_kb(tmp_path)
    kb.ingest([docs])
    manifest, _ = kb._open()
    with manifest._lock:
        free = manifest._db.execute("PRAGMA freelist_count").fetchone()[0]
        mode = manifest._db.execute("PRAGMA auto_vacuum").fetchone()[0]
    assert (free, mode) == (0, 2)
    assert_consistent(kb, docs)


def test_doctor_and_ingest_commands_tell_of_staged_and_resumed_chunks(tmp_path, docs, monkeypatch, capsys):
    from slmkit import cli

    kb = crashed_while_embedding(tmp_path, docs, monkeypatch)
    kept = staged(kb)
    monkeypatch.setattr(cli, "_knowledge_base", lambda args: make_kb(tmp_path))  # the fake embedder
    options = ["--kb", "notes", "--path", str(tmp_path / "kb"), "-q"]
    assert cli.main(["doctor", "--check", *options]) == 0
    out = capsys.readouterr().out
    assert f"{kept} chunks staged by an interrupted ingestion are kept" in out
    assert out.rstrip().endswith("consistent")
    assert cli.main(["ingest", str(docs), *options]) == 0
    resumed = re.search(r"(\d+) chunks embedded \((\d+) more resumed\)", capsys.readouterr().out)
    assert resumed is not None
    assert 0 < int(resumed.group(2)) <= kept
