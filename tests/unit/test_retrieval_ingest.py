"""Incremental ingestion: unchanged / changed / deleted files, interrupted runs, and no duplicate ever.

Fast and offline: a deterministic fake embedder, a real embedded Chroma and manifest in ``tmp_path``.
"""

from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

from slmkit.core.errors import DocumentLoadError, KnowledgeBaseError
from slmkit.retrieval import KnowledgeBase, KnowledgeBaseConfig
from slmkit.retrieval.ingest import chunk_ids
from slmkit.retrieval.loaders import is_supported, load_file
from slmkit.retrieval.manifest import Manifest
from slmkit.retrieval.splitting import Splitter
from slmkit.retrieval.store import ChunkStore

SMALL = KnowledgeBaseConfig(chunk_size=40, chunk_overlap=0, batch_chunks=2)


def paragraph(topic: str, n: int = 3) -> str:
    return " ".join(f"Sentence {i} is about {topic} and nothing else at all." for i in range(n))


def make_kb(root: Path, name: str = "notes", **kwargs) -> KnowledgeBase:
    kwargs.setdefault("config", SMALL)
    return KnowledgeBase(name=name, path=root / "kb", embedding=DeterministicFakeEmbedding(size=16), **kwargs)


def expected_ids(kb: KnowledgeBase, folder: Path) -> set[str]:
    """The chunk ids a fresh ingestion of ``folder`` must hold: every current file split from scratch."""
    counter, _ = kb._token_counter()
    splitter = Splitter(kb.config.chunk_size, kb.config.chunk_overlap, counter)
    ids: set[str] = set()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and is_supported(path) and not path.name.startswith("."):
            with contextlib.suppress(DocumentLoadError):
                ids.update(chunk_ids(splitter.split(load_file(path))))
    return ids


def assert_consistent(kb: KnowledgeBase, folder: Path | None = None) -> None:
    """Chroma, manifest and BM25 hold exactly the same chunks, and (given ``folder``) exactly its current ones."""
    manifest, store = kb._open()
    in_manifest = manifest.chunk_ids(manifest.source_paths())
    in_store = store.ids()
    assert in_store == in_manifest
    assert store.count() == manifest.chunk_count() == len(in_manifest)  # no id twice anywhere
    assert set(kb._bm25_index().ids) == in_manifest
    assert manifest.pending() == []
    if folder is not None:
        assert in_manifest == expected_ids(kb, folder)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.md").write_text(f"# Alpha\n\n{paragraph('alpha', 4)}\n")
    (folder / "b.txt").write_text(paragraph("beta", 5))
    (folder / "sub" / "c.md").write_text(f"# Gamma\n\n{paragraph('gamma')}\n\n## More\n\n{paragraph('delta')}\n")
    return folder


def test_first_ingestion_adds_every_file(tmp_path, docs):
    kb = make_kb(tmp_path)
    report = kb.ingest([docs])
    assert sorted(Path(p).name for p in report.added) == ["a.md", "b.txt", "c.md"]
    assert report.chunks_embedded == kb.chunk_count() > 3
    assert_consistent(kb, docs)


def test_unchanged_files_are_skipped_without_embedding(tmp_path, docs, monkeypatch):
    kb = make_kb(tmp_path)
    kb.ingest([docs])
    monkeypatch.setattr(kb, "_embed_texts", lambda texts: pytest.fail("re-embedded an unchanged corpus"))
    report = kb.ingest([docs])
    assert (report.unchanged, report.added, report.updated, report.removed) == (3, [], [], [])


def test_touched_but_identical_file_is_unchanged(tmp_path, docs):
    kb = make_kb(tmp_path)
    kb.ingest([docs])
    path = docs / "a.md"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 5_000_000_000))
    report = kb.ingest([docs])
    assert report.unchanged == 3
    assert report.updated == []


def test_changed_file_replaces_its_chunks_and_reembeds_only_new_text(tmp_path, docs):
    kb = make_kb(tmp_path)
    kb.ingest([docs])
    before = kb.chunk_count()
    path = docs / "b.txt"
    path.write_text(paragraph("beta", 5) + " A brand new closing sentence about epsilon.")
    report = kb.ingest([docs])
    assert report.updated == [str(path)]
    assert report.unchanged == 2
    assert 1 <= report.chunks_embedded < before
    assert_consistent(kb, docs)
    hits = kb.as_retriever(k=1, min_relevance=None, min_top_relevance=None, dense_weight=0).invoke("epsilon")
    assert hits[0].metadata["source"] == str(path)


def test_moved_text_keeps_its_id_but_gets_new_offsets(tmp_path, docs):
    kb = make_kb(tmp_path)
    kb.ingest([docs])
    path = docs / "b.txt"
    path.write_text("\n\n\n" + path.read_text())
    report = kb.ingest([docs])
    assert report.chunks_embedded == 0
    assert report.updated == [str(path)]
    _, store = kb._open()
    got = store.collection.get(where={"source": str(path)}, include=["metadatas"])
    assert min(m["start_line"] for m in got["metadatas"]) == 4
    assert_consistent(kb, docs)


def test_deleted_file_is_removed(tmp_path, docs):
    kb = make_kb(tmp_path)
    kb.ingest([docs])
    (docs / "sub" / "c.md").unlink()
    report = kb.ingest([docs])
    assert report.removed == [str(docs / "sub" / "c.md")]
    assert report.chunks_removed > 0
    assert_consistent(kb, docs)


def test_deleted_folder_given_by_name_is_removed(tmp_path, docs):
    kb = make_kb(tmp_path)
    kb.ingest([docs])
    for path in (docs / "sub").iterdir():
        path.unlink()
    (docs / "sub").rmdir()
    report = kb.ingest([docs / "sub"])
    assert report.removed == [str(docs / "sub" / "c.md")]
    assert report.skipped == []
    assert_consistent(kb, docs)


def test_files_outside_the_given_paths_are_kept(tmp_path, docs):
    kb = make_kb(tmp_path)
    kb.ingest([docs])
    report = kb.ingest([docs / "a.md"])
    assert report.removed == []
    assert report.unchanged == 1
    assert len(kb.sources()) == 3


def test_bad_files_are_reported_and_the_rest_is_ingested(tmp_path, docs):
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    (docs / "photo.png").write_bytes(b"\x89PNG")
    (docs / ".hidden.md").write_text("# Hidden\n\nnot ingested")
    kb = make_kb(tmp_path)
    report = kb.ingest([docs, tmp_path / "nowhere"])
    kinds = {Path(s.path).name: s.kind for s in report.skipped}
    assert kinds == {"broken.pdf": "unreadable", "photo.png": "unsupported", "nowhere": "missing"}
    assert len(report.added) == 3
    assert_consistent(kb, docs)


def test_a_file_that_becomes_unreadable_keeps_its_last_good_chunks(tmp_path, docs):
    kb = make_kb(tmp_path)
    kb.ingest([docs])
    before = kb.chunk_count()
    (docs / "b.txt").write_bytes(b"\x00binary now")
    report = kb.ingest([docs])
    assert [s.kind for s in report.skipped] == ["unreadable"]
    assert kb.chunk_count() == before


def test_changed_chunk_size_splits_every_file_again(tmp_path, docs):
    kb = make_kb(tmp_path)
    kb.ingest([docs])
    bigger = make_kb(tmp_path, config=KnowledgeBaseConfig(chunk_size=80, chunk_overlap=8, batch_chunks=3))
    report = bigger.ingest([docs])
    assert len(report.updated) == 3
    assert_consistent(bigger, docs)


def test_knowledge_bases_live_side_by_side(tmp_path, docs):
    one, two = make_kb(tmp_path, "one"), make_kb(tmp_path, "two")
    one.ingest([docs / "a.md"])
    two.ingest([docs / "b.txt"])
    assert [Path(p).name for p in one.sources()] == ["a.md"]
    assert [Path(p).name for p in two.sources()] == ["b.txt"]
    hit = two.as_retriever(k=1, min_relevance=None, min_top_relevance=None).invoke("alpha")
    assert hit[0].metadata["source"].endswith("b.txt")


def test_reopening_with_another_embedder_is_refused(tmp_path, docs):
    make_kb(tmp_path).ingest([docs])
    other = KnowledgeBase(name="notes", path=tmp_path / "kb", embedding=DeterministicFakeEmbedding(size=8))
    with pytest.raises(KnowledgeBaseError, match="was built with the embedder"):
        other.chunk_count()


def test_construction_opens_nothing(tmp_path):
    kb = KnowledgeBase(name="lazy", path=tmp_path / "kb")
    assert not (tmp_path / "kb").exists()
    assert not kb.exists()


class CrashError(Exception):
    pass


def crash_at(monkeypatch, target: object, method: str, *, after: int = 0) -> None:
    """Make ``target.method`` raise on its (after+1)-th call: a process dying at that point."""
    original = getattr(target, method)
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > after:
            raise CrashError(f"{method} interrupted")
        return original(*args, **kwargs)

    monkeypatch.setattr(target, method, wrapper)


def change_everything(docs: Path) -> None:
    (docs / "b.txt").write_text(paragraph("beta", 2) + " Now also about zeta.")
    (docs / "sub" / "c.md").unlink()
    (docs / "d.md").write_text(f"# Delta\n\n{paragraph('omega', 4)}\n")
    (docs / "e.txt").write_text(paragraph("epsilon", 4))


@pytest.mark.parametrize(
    ("cls", "method", "after"),
    [
        (ChunkStore, "upsert", 0),  # before anything reached Chroma
        (ChunkStore, "upsert", 1),  # one batch committed, the next half-written
        (Manifest, "commit", 1),  # chunks in Chroma, manifest not switched over
        (ChunkStore, "delete", 0),  # manifest switched, old chunks still in Chroma
        (Manifest, "clear_pending", 1),  # all done but the bookkeeping
    ],
)
def test_interrupted_ingestion_leaves_a_consistent_kb_and_rerun_completes_it(
    tmp_path, docs, monkeypatch, cls, method, after
):
    make_kb(tmp_path).ingest([docs])
    change_everything(docs)
    with monkeypatch.context() as patch:
        crash_at(patch, cls, method, after=after)
        with pytest.raises(CrashError):
            make_kb(tmp_path).ingest([docs])
    reopened = make_kb(tmp_path)  # as a new process would
    assert_consistent(reopened)
    reopened.ingest([docs])
    assert_consistent(reopened, docs)


def test_no_duplicates_after_any_sequence_of_changes(tmp_path):
    """A seeded random walk of create / modify / delete / rename / interrupted ingest, checked at every step."""
    rng = random.Random(1234)
    folder = tmp_path / "docs"
    folder.mkdir()
    topics = ["apples", "rivers", "engines", "music", "stars", "bread"]
    for step in range(25):
        files = sorted(folder.glob("*.md"))
        action = rng.choice(["create", "modify", "delete", "rename", "duplicate"] if files else ["create"])
        if action == "create":
            (folder / f"f{step}.md").write_text(f"# {rng.choice(topics)}\n\n{paragraph(rng.choice(topics), 3)}\n")
        elif action == "modify":
            path = rng.choice(files)
            path.write_text(path.read_text() + f"\n{paragraph(rng.choice(topics), rng.randint(1, 3))}\n")
        elif action == "delete":
            rng.choice(files).unlink()
        elif action == "rename":
            path = rng.choice(files)
            path.rename(folder / f"r{step}.md")
        else:  # the same text in a second file must stay two chunks, one per file
            path = rng.choice(files)
            (folder / f"copy{step}.md").write_text(path.read_text())
        kb = make_kb(tmp_path)
        if rng.random() < 0.3:
            with pytest.MonkeyPatch.context() as patch:
                target, method = rng.choice([(ChunkStore, "upsert"), (ChunkStore, "delete"), (Manifest, "commit")])
                crash_at(patch, target, method)
                with contextlib.suppress(CrashError):
                    kb.ingest([folder])
            kb = make_kb(tmp_path)
            assert_consistent(kb)
        kb.ingest([folder])
        assert_consistent(kb, folder)


# -- every bad file is one skipped file ------------------------------------------------------------------------
def odd_name(folder: Path, raw: bytes = b"\xff\xfe.txt") -> Path:
    """A file whose name is not valid UTF-8 (Linux allows it; macOS does not, so the test is skipped there)."""
    try:
        fd = os.open(os.path.join(os.fsencode(folder), raw), os.O_WRONLY | os.O_CREAT, 0o644)
    except OSError as exc:
        pytest.skip(f"this file system refuses non-UTF-8 names ({exc})")
    os.write(fd, paragraph("pineapple", 2).encode())
    os.close(fd)
    return Path(os.fsdecode(os.path.join(os.fsencode(folder), raw)))


@pytest.mark.timeout(120)  # before, the FIFO blocked and /dev/zero was read forever
def test_special_files_are_listed_and_an_undecodable_name_is_ingested(tmp_path, docs):
    odd = odd_name(docs)
    os.mkfifo(docs / "pipe.txt")
    (docs / "zero.md").symlink_to("/dev/zero")
    (docs / "sub" / "gone.md").symlink_to(docs / "nowhere.md")
    kb = make_kb(tmp_path)

    report = kb.ingest([docs])

    shown = str(docs / "\\xff\\xfe.txt")  # the source name: undecodable bytes as \xNN
    assert sorted(report.added) == sorted([str(docs / "a.md"), str(docs / "b.txt"), str(docs / "sub/c.md"), shown])
    skipped = {Path(s.path).name: (s.kind, s.reason) for s in report.skipped}
    assert skipped == {
        "pipe.txt": ("special", "a FIFO, not a regular file"),
        "zero.md": ("special", "a character device, not a regular file"),
        "gone.md": ("unreadable", f"cannot be read: a broken symbolic link (to {docs / 'nowhere.md'})"),
    }
    assert_consistent(kb, docs)
    hit = kb.as_retriever(k=1, min_relevance=None, min_top_relevance=None, dense_weight=0).invoke("pineapple")
    assert hit[0].metadata["source"] == shown

    again = make_kb(tmp_path).ingest([docs])  # a new process: the escaped name finds its record
    assert (again.unchanged, again.added, again.updated) == (4, [], [])
    odd.unlink()
    assert make_kb(tmp_path).ingest([docs]).removed == [shown]


def test_an_undecodable_name_that_reads_like_another_file_is_skipped(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    odd_name(folder, b"\xff.txt")
    (folder / "\\xff.txt").write_text(paragraph("literal"))  # a valid name, spelled like the escaped one
    report = make_kb(tmp_path).ingest([folder])
    assert report.added == [str(folder / "\\xff.txt")]
    [skipped] = report.skipped
    assert (skipped.path, skipped.kind) == (str(folder / "\\xff.txt"), "unreadable")
    assert "not valid UTF-8" in skipped.reason


def test_a_file_that_changes_while_being_ingested_is_skipped_then_picked_up(tmp_path, docs, monkeypatch):
    import slmkit.retrieval.ingest as ingest_module

    path = docs / "b.txt"
    real_load = ingest_module.load_file

    def load_while_written(file):
        docs_ = real_load(file)
        if file == path:
            with path.open("a") as fh:  # another program still writing it
                fh.write(" One more sentence arrives late.")
        return docs_

    monkeypatch.setattr(ingest_module, "load_file", load_while_written)
    kb = make_kb(tmp_path)
    report = kb.ingest([docs])
    [skipped] = report.skipped
    assert (skipped.path, skipped.kind) == (str(path), "unreadable")
    assert "changed while it was being ingested" in skipped.reason
    assert len(report.added) == 2
    assert_consistent(kb)
    monkeypatch.undo()
    assert make_kb(tmp_path).ingest([docs]).added == [str(path)]
    assert_consistent(make_kb(tmp_path), docs)


def test_a_file_that_vanishes_before_it_is_read_is_skipped(tmp_path, docs, monkeypatch):
    import slmkit.retrieval.ingest as ingest_module

    real_load = ingest_module.load_file

    def deleted_first(file):
        if file.name == "a.md":
            file.unlink()
        return real_load(file)

    monkeypatch.setattr(ingest_module, "load_file", deleted_first)
    kb = make_kb(tmp_path)
    report = kb.ingest([docs])
    assert [(Path(s.path).name, s.kind) for s in report.skipped] == [("a.md", "unreadable")]
    assert "no such file" in report.skipped[0].reason
    assert_consistent(kb, docs)


def test_a_folder_that_cannot_be_listed_keeps_its_files(tmp_path, docs, monkeypatch):
    kb = make_kb(tmp_path)
    kb.ingest([docs])
    real_walk = os.walk

    def walk(top, onerror=None, **kwargs):  # what a folder without read permission does (root ignores chmod)
        for root, dirs, files in real_walk(top, onerror=onerror, **kwargs):
            if Path(root).name == "sub":
                onerror(PermissionError(13, "Permission denied", root))
                continue
            yield root, dirs, files

    monkeypatch.setattr(os, "walk", walk)
    report = make_kb(tmp_path).ingest([docs])
    assert report.removed == []
    assert [(s.path, s.kind) for s in report.skipped] == [(str(docs / "sub"), "unreadable")]
    assert "folder cannot be listed: Permission denied" in report.skipped[0].reason
    assert len(make_kb(tmp_path).sources()) == 3


# -- a damaged manifest ----------------------------------------------------------------------------------------
def damage(manifest: Path, how: str) -> None:
    if how == "not a database":
        manifest.write_bytes(b"this is not an SQLite file at all " * 200)
    else:  # a valid header, then garbage over the table pages
        data = bytearray(manifest.read_bytes())
        assert len(data) > 8192
        data[4096:] = b"\xa5" * (len(data) - 4096)
        manifest.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["not a database", "malformed pages"])
def test_a_damaged_manifest_says_what_to_do_and_the_advice_works(tmp_path, docs, how):
    from slmkit.core.errors import CorruptManifestError

    kb = make_kb(tmp_path)
    kb.ingest([docs])
    kb.close()  # checkpoints the WAL into the file
    damage(kb.folder / "manifest.sqlite", how)
    reopened = make_kb(tmp_path)
    with pytest.raises(CorruptManifestError) as info:
        reopened.ingest([docs])
    message = str(info.value)
    assert str(kb.folder / "manifest.sqlite") in message
    assert f"mv {kb.folder} {kb.folder}.corrupt-" in message
    assert f"slmkit ingest PATH... --kb notes --path {kb.path}" in message
    assert isinstance(info.value, KnowledgeBaseError)

    (kb.folder).rename(tmp_path / "moved-away")  # what the message says to do
    fresh = make_kb(tmp_path)
    report = fresh.ingest([docs])
    assert len(report.added) == 3
    assert_consistent(fresh, docs)  # the old collection's chunks were dropped, not left to haunt dense search


@pytest.mark.parametrize("how", ["not a database", "malformed pages"])
def test_doctor_rebuilds_a_damaged_manifest_from_the_files_chroma_held(tmp_path, docs, how):
    kb = make_kb(tmp_path)
    kb.ingest([docs])
    kb.close()
    damage(kb.folder / "manifest.sqlite", how)
    doctor = make_kb(tmp_path)
    with pytest.raises(KnowledgeBaseError, match="slmkit doctor --kb notes"):
        doctor.verify(repair=False)
    report = doctor.verify(repair=True)
    assert report.manifest_set_aside
    assert Path(report.manifest_set_aside).is_file()  # the damaged file is kept
    assert sorted(Path(p).name for p in report.reingested) == ["a.md", "b.txt", "c.md"]
    assert_consistent(doctor, docs)


def test_reembed_keeps_the_bm25_index_the_texts_did_not_change(tmp_path, docs, monkeypatch):
    from langchain_core.embeddings import DeterministicFakeEmbedding

    kb = make_kb(tmp_path)
    kb.ingest([docs])
    words = kb.as_retriever(k=1, min_relevance=None, min_top_relevance=None, dense_weight=0).invoke("epsilon")
    builds: list[int] = []
    build = kb._build_bm25
    monkeypatch.setattr(kb, "_build_bm25", lambda manifest: builds.append(1) or build(manifest))
    kb.reembed(DeterministicFakeEmbedding(size=24))
    assert builds == []
    generation = kb._open()[0].generation
    assert [p.name.split("-")[0] for p in (kb.folder / "bm25").iterdir()] == [str(generation)]
    again = kb.as_retriever(k=1, min_relevance=None, min_top_relevance=None, dense_weight=0).invoke("epsilon")
    assert [d.metadata["chunk_id"] for d in again] == [d.metadata["chunk_id"] for d in words]
    assert builds == []
