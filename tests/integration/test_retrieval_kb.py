"""A knowledge base end to end with the real MiniLM and Chroma: every format, re-ingestion, CLI, Chroma server."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slmkit.cli import main
from slmkit.core.errors import StoreConnectionError
from slmkit.retrieval import KnowledgeBase
from slmkit.retrieval.testing import write_docx, write_pdf


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    docs = tmp_path_factory.mktemp("mixed")
    (docs / "garden.md").write_text(
        "# Garden guide\n\n## Tomatoes\n\nWater tomatoes deeply twice a week and stake the stems when they flower.\n\n"
        "## Roses\n\nPrune roses in late winter, just above an outward-facing bud.\n"
    )
    (docs / "bikes.txt").write_text("To fix a flat bicycle tyre, remove the wheel, find the puncture and patch it.\n")
    (docs / "telescope.html").write_text(
        "<html><head><title>Telescopes</title></head><body><h1>Choosing a telescope</h1>"
        "<p>The aperture of a telescope decides how much light it gathers and how faint the stars it shows.</p>"
        "</body></html>"
    )
    write_pdf(
        docs / "kettle.pdf",
        [["Kettle user manual", "Read the safety notes first."], ["Descale the kettle monthly with white vinegar."]],
    )
    write_docx(docs / "bread.docx", "Baking notes", {"Sourdough": "Feed the sourdough starter the evening before."})
    return docs


@pytest.fixture(scope="module")
def kb(folder, tmp_path_factory) -> KnowledgeBase:
    base = KnowledgeBase(name="mixed", path=tmp_path_factory.mktemp("kb"))
    report = base.ingest([folder])
    assert len(report.added) == 5
    assert report.skipped == []
    return base


@pytest.mark.parametrize(
    ("query", "source", "page"),
    [
        ("How often should I water tomato plants?", "garden.md", None),
        ("repair a punctured bike tire", "bikes.txt", None),
        ("what does telescope aperture do", "telescope.html", None),
        ("how to remove limescale from a kettle", "kettle.pdf", 2),
        ("when to feed a sourdough starter", "bread.docx", None),
    ],
)
def test_each_format_is_found_with_its_source(kb, folder, query, source, page):
    [top] = kb.as_retriever(k=1).invoke(query)
    assert top.metadata["source"] == str(folder / source)
    assert top.metadata.get("page") == page


def test_unrelated_question_finds_nothing(kb):
    assert kb.as_retriever().invoke("Who won the football world cup in 1974?") == []


def test_reingesting_an_unchanged_folder_is_a_fraction_of_the_first(kb, folder):
    first = kb.ingest([folder])  # everything unchanged since the fixture's ingestion
    assert first.unchanged == 5
    assert first.chunks_embedded == 0
    assert first.seconds < 0.5


def test_cli_ingest_and_search(folder, tmp_path, capsys):
    assert main(["ingest", str(folder), "--kb", "cli", "--path", str(tmp_path), "-q"]) == 0
    assert "5 added" in capsys.readouterr().out
    assert main(["search", "descale the kettle", "--kb", "cli", "--path", str(tmp_path), "-k", "1"]) == 0
    out = capsys.readouterr().out
    assert f"{folder / 'kettle.pdf'} (p. 2)" in out
    assert "vinegar" in out
    assert main(["search", "anything", "--kb", "missing", "--path", str(tmp_path)]) == 1
    assert main(["ingest", str(tmp_path / "nowhere"), "--kb", "cli", "--path", str(tmp_path), "-q"]) == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def chroma_server(tmp_path):
    """A real ``chroma run`` on 127.0.0.1, stopped after the test."""
    chroma = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
    if not Path(chroma).exists():
        pytest.skip("chromadb's `chroma` command is not installed")
    port = _free_port()
    process = subprocess.Popen(
        [chroma, "run", "--path", str(tmp_path / "server"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        else:
            pytest.fail("chroma run did not start listening within 30 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_chroma_server_over_http(chroma_server, folder, tmp_path):
    kb = KnowledgeBase(name="remote", path=tmp_path / "local", chroma_url=chroma_server)
    report = kb.ingest([folder / "bikes.txt", folder / "garden.md"])
    assert len(report.added) == 2
    assert not (tmp_path / "local" / "chroma").exists()  # vectors live on the server
    [top] = kb.as_retriever(k=1).invoke("prune roses")
    assert top.metadata["source"] == str(folder / "garden.md")
    again = KnowledgeBase(name="remote", path=tmp_path / "local", chroma_url=chroma_server)
    assert again.chunk_count() == kb.chunk_count()


def test_unreachable_chroma_server_says_how_to_start_one(folder, tmp_path):
    kb = KnowledgeBase(name="remote", path=tmp_path, chroma_url=f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(StoreConnectionError, match="chroma run"):
        kb.ingest([folder / "bikes.txt"])
