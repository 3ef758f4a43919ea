"""Each loader on a real file the test writes, and the bad files ingestion must report instead of crashing on."""

from __future__ import annotations

import io
import os
import re

import pytest

from slmkit.core.errors import DocumentLoadError
from slmkit.retrieval.loaders import LOADERS, load_file, source_name
from slmkit.retrieval.testing import write_docx, write_pdf


def test_text_keeps_the_file_text(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("line one\r\nline two\n", encoding="utf-8")
    [doc] = load_file(path)
    assert doc.page_content == "line one\nline two\n"
    assert doc.metadata == {"source": str(path), "format": "text"}


def test_text_in_cp1252_is_read(tmp_path):
    path = tmp_path / "old.txt"
    path.write_bytes("café au lait".encode("cp1252"))
    assert load_file(path)[0].page_content == "café au lait"


def test_markdown(tmp_path):
    path = tmp_path / "guide.md"
    path.write_text("# Guide\n\nBody text.\n")
    [doc] = load_file(path)
    assert doc.metadata["format"] == "markdown"
    assert doc.page_content.startswith("# Guide")


def test_html_headings_become_markdown_and_scripts_go(tmp_path):
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>T</title><style>p{}</style></head><body><h1>Install</h1><p>Run the <b>setup</b>.</p>"
        "<script>alert(1)</script><h2>Linux</h2><ul><li>apt</li><li>dnf</li></ul>"
        "<table><tr><td>a</td><td>b</td></tr></table></body></html>"
    )
    [doc] = load_file(path)
    text = doc.page_content
    assert "# Install" in text
    assert "## Linux" in text
    assert "Run the setup." in text
    assert "alert" not in text
    assert "p{}" not in text
    assert "apt" in text
    assert "a | b" in text


def test_html_title_used_when_there_is_no_heading(tmp_path):
    path = tmp_path / "plain.htm"
    path.write_text("<html><head><title>Release notes</title></head><body><p>Fixed a crash.</p></body></html>")
    assert load_file(path)[0].page_content.startswith("# Release notes")


def test_pdf_keeps_page_numbers(tmp_path):
    path = write_pdf(tmp_path / "paper.pdf", [["Introduction to fusion"], [], ["Results on page three"]])
    docs = load_file(path)
    assert [d.metadata["page"] for d in docs] == [1, 3]  # an empty page yields no document
    assert "Introduction to fusion" in docs[0].page_content
    assert all(d.metadata["format"] == "pdf" and d.metadata["source"] == str(path) for d in docs)


def test_docx_headings_and_tables(tmp_path):
    path = write_docx(
        tmp_path / "report.docx",
        "Quarterly report",
        {"Staff": "Revenue grew in the northern region."},
        table=[["name", "role"], ["Ada", "engineer"]],
    )
    [doc] = load_file(path)
    assert doc.page_content.splitlines()[0] == "# Quarterly report"
    assert "## Staff" in doc.page_content
    assert "Ada | engineer" in doc.page_content


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("image.png", b"\x89PNG\r\n", "unsupported file type '.png'"),
        ("Makefile", b"all:\n", "unsupported file type '(none)'"),
        ("binary.txt", b"\x00\x01\x02abc", "looks binary"),
        ("broken.pdf", b"%PDF-1.4\nthis is not a pdf", "not a readable PDF"),
        ("broken.docx", b"PK\x03\x04 not a zip", "not a readable .docx"),
        ("scan.pdf", None, "no text layer"),
    ],
)
def test_bad_files_raise_a_load_error_that_says_why(tmp_path, name, content, reason):
    path = tmp_path / name
    if content is None:
        write_pdf(path, [[]])
    else:
        path.write_bytes(content)
    with pytest.raises(DocumentLoadError, match=re.escape(reason)):
        load_file(path)


def test_missing_file_is_a_load_error(tmp_path):
    with pytest.raises(DocumentLoadError, match="cannot be read"):
        load_file(tmp_path / "gone.md")


def test_every_documented_extension_has_a_loader():
    assert {".txt", ".md", ".html", ".pdf", ".docx"} <= set(LOADERS)


@pytest.mark.timeout(60)  # reading either used to block (FIFO) or never end (/dev/zero)
def test_fifos_and_devices_are_refused_without_being_read(tmp_path):
    os.mkfifo(tmp_path / "pipe.txt")
    (tmp_path / "zero.md").symlink_to("/dev/zero")
    with pytest.raises(DocumentLoadError, match=re.escape("pipe.txt is a FIFO, not a regular file")):
        load_file(tmp_path / "pipe.txt")
    with pytest.raises(DocumentLoadError, match=re.escape("zero.md is a character device, not a regular file")):
        load_file(tmp_path / "zero.md")


def test_a_file_that_grows_while_read_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "log.txt"
    path.write_text("first line\n")
    real_fdopen = os.fdopen

    class StillWritten(io.BufferedReader):
        def read(self, size=-1):
            data = super().read(size)
            with path.open("a") as fh:
                fh.write("a line written meanwhile\n")
            return data

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: StillWritten(real_fdopen(fd, "rb", buffering=0)))
    with pytest.raises(DocumentLoadError, match=re.escape("log.txt changed while it was read")):
        load_file(path)


def test_an_undecodable_file_name_becomes_an_escaped_source(tmp_path):
    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9.md")
    try:
        with open(raw, "wb") as fh:
            fh.write(b"# Menu\n\nCoffee.\n")
    except OSError as exc:
        pytest.skip(f"this file system refuses non-UTF-8 names ({exc})")
    [doc] = load_file(os.fsdecode(raw))
    assert doc.metadata["source"] == f"{tmp_path}/caf\\xe9.md"
    assert source_name(os.fsdecode(raw)).encode("utf-8")  # encodable: SQLite, Chroma and terminals take it
    assert source_name(tmp_path / "plain.md") == str(tmp_path / "plain.md")
