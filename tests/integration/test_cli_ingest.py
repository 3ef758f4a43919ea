"""``slmkit ingest`` as a user runs it, on the files that used to stop it: a name that is not UTF-8, a FIFO, a
symlink to ``/dev/zero`` (each hung or aborted the whole ingestion), an unreadable file, a damaged manifest.

Real processes, the packaged embedder, a fresh ``--path``; every run has a timeout, since the old failure was a hang.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(900)
ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 300  # seconds: loading the embedder takes a few; a hang takes forever


def ingest(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slmkit", "ingest", *map(str, args), "-q"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=RUN_TIMEOUT,
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Two documents (one named with the bytes ff fe), a FIFO and a symlink to /dev/zero."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "warranty.txt").write_text("The GridBox 3 comes with a ten-year warranty on the battery.\n")
    try:
        with open(os.path.join(os.fsencode(docs), b"\xff\xfe.txt"), "wb") as fh:
            fh.write(b"The vault code word is pineapple.\n")
    except OSError as exc:
        pytest.skip(f"this file system refuses non-UTF-8 names ({exc})")
    os.mkfifo(docs / "pipe.txt")
    (docs / "zero.txt").symlink_to("/dev/zero")
    return docs


def test_bad_files_are_skipped_one_line_each_and_the_rest_is_ingested(tmp_path, folder):
    kb = ["--kb", "notes", "--path", tmp_path / "kb"]
    first = ingest(folder, *kb)
    assert "Traceback" not in first.stderr
    assert first.returncode == 0, first.stderr  # README: files slmkit does not read leave the exit code at 0
    assert "notes: 2 added, 0 updated, 0 unchanged, 0 removed, 2 skipped" in first.stdout
    assert first.stderr.splitlines() == [
        f"skipped {folder / 'pipe.txt'}: a FIFO, not a regular file",
        f"skipped {folder / 'zero.txt'}: a character device, not a regular file",
    ]

    again = ingest(folder, *kb)
    assert again.returncode == 0, again.stderr
    assert "0 added, 0 updated, 2 unchanged, 0 removed, 2 skipped" in again.stdout  # the odd name is found again

    search = subprocess.run(
        [sys.executable, "-m", "slmkit", "search", "vault code word", "-k", "1", *map(str, kb)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert search.returncode == 0, search.stderr
    assert f"{folder}/\\xff\\xfe.txt" in search.stdout


def test_a_document_that_cannot_be_read_exits_1_and_the_rest_is_ingested(tmp_path, folder):
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    done = ingest(folder, "--kb", "notes", "--path", tmp_path / "kb")
    assert done.returncode == 1
    assert "2 added" in done.stdout
    assert f"skipped {folder / 'broken.pdf'} is not a readable PDF" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_damaged_manifest_is_a_message_not_a_traceback(tmp_path, folder):
    kb = ["--kb", "notes", "--path", tmp_path / "kb"]
    assert ingest(folder, *kb).returncode == 0
    manifest = tmp_path / "kb" / "notes" / "manifest.sqlite"
    manifest.write_bytes(b"\x00garbage" * 512)
    broken = ingest(folder, *kb)
    assert broken.returncode == 1
    assert "Traceback" not in broken.stderr
    assert f"error: The manifest of knowledge base 'notes', {manifest}, is damaged" in broken.stderr
    assert f"mv {manifest.parent} " in broken.stderr
