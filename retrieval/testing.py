"""Test helpers shipped with the package: a fake embedder with meaningful similarities, and sample-file writers.

langchain-core's ``DeterministicFakeEmbedding`` gives every text a random vector, which is enough where the
embedder is not the point; ``BagOfWordsEmbedding`` is for tests about relevance, thresholds and
de-duplication: texts sharing words get similar vectors, texts sharing none are orthogonal. ``write_pdf`` and
``write_docx`` produce real files (a PDF with a text layer, a Word document with headings and a table) without
any document fixture in the repository.
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path

from langchain_core.embeddings import Embeddings

__all__ = ["BagOfWordsEmbedding", "write_docx", "write_pdf"]


class BagOfWordsEmbedding(Embeddings):
    """Hashed, L2-normalised word counts: cosine similarity ~ word overlap. Fast, deterministic, offline."""

    def __init__(self, size: int = 256) -> None:
        self.size = size

    def _vector(self, text: str) -> list[float]:
        vector = [0.0] * self.size
        for word in re.findall(r"[a-z0-9]{3,}", text.lower()):
            vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % self.size] += 1.0
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vector(text)


def write_pdf(path: Path, pages: list[list[str]]) -> Path:
    """A minimal PDF with a real text layer: one Helvetica line per string, one page per list (ASCII only)."""
    page_ids = [3 + 2 * i for i in range(len(pages))]
    font_id = 3 + 2 * len(pages)
    kids = " ".join(f"{i} 0 R" for i in page_ids)
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode()]
    for page_id, lines in zip(page_ids, pages, strict=True):
        ops = ["BT", "/F1 12 Tf", "14 TL", "72 720 Td", *(f"({line}) Tj T*" for line in lines), "ET"]
        stream = "\n".join(ops).encode()
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {page_id + 1} 0 R "
            f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    path.write_bytes(bytes(out))
    return path


def write_docx(path: Path, title: str, sections: dict[str, str], table: list[list[str]] | None = None) -> Path:
    """A Word document: ``title`` as heading 1, each section as heading 2 + paragraph, then an optional table."""
    import docx

    document = docx.Document()
    document.add_heading(title, level=1)
    for heading, text in sections.items():
        document.add_heading(heading, level=2)
        document.add_paragraph(text)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    document.save(str(path))
    return path
