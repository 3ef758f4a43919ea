"""Token-aware splitting: sizes, overlap, offsets that point back into the text, headings as metadata."""

from __future__ import annotations

import itertools

import pytest
from langchain_core.documents import Document

from slmkit.core.errors import ConfigurationError
from slmkit.core.tokens import TiktokenCounter
from slmkit.retrieval.config import KnowledgeBaseConfig
from slmkit.retrieval.splitting import Splitter, markdown_sections

count = TiktokenCounter().count

MARKDOWN = """Intro before any heading.

# Install

Run the installer. It asks two questions.

```bash
# not a heading, a shell comment
make setup
```

## Linux

Use the package manager.

# Usage

Call the command.
"""


def body(chunk: Document) -> str:
    """The chunk text without its heading line."""
    return chunk.page_content.split("\n\n", 1)[1] if "headings" in chunk.metadata else chunk.page_content


def test_markdown_sections_follow_the_heading_path_and_skip_code_fences():
    sections = markdown_sections(MARKDOWN)
    assert [s.headings for s in sections] == [(), ("Install",), ("Install", "Linux"), ("Usage",)]
    assert "shell comment" in MARKDOWN[sections[1].start : sections[1].end]


def test_chunks_fit_the_budget_and_offsets_point_back_into_the_text():
    text = " ".join(f"Sentence number {i} talks about topic {i % 7}." for i in range(200))
    doc = Document(page_content=text, metadata={"source": "/x.txt", "format": "text"})
    chunks = Splitter(64, 16, count).split_one(doc)
    assert len(chunks) > 5
    for chunk in chunks:
        assert count(chunk.page_content) <= 64
        assert text[chunk.metadata["start_index"] : chunk.metadata["end_index"]] == chunk.page_content
        assert chunk.metadata["source"] == "/x.txt"
    starts = [c.metadata["start_index"] for c in chunks]
    assert starts == sorted(starts)
    # neighbours share whole sentences: each chunk starts before the previous one ended
    assert all(nxt.metadata["start_index"] < prev.metadata["end_index"] for prev, nxt in itertools.pairwise(chunks))


def test_chunks_end_at_sentence_boundaries_when_they_can():
    text = " ".join(f"Claim {i} holds for every sample we measured." for i in range(60))
    chunks = Splitter(48, 0, count).split_one(Document(page_content=text, metadata={"format": "text"}))
    assert all(c.page_content.endswith(".") for c in chunks)


def test_markdown_headings_are_metadata_and_lead_each_chunk():
    doc = Document(page_content=MARKDOWN, metadata={"source": "/g.md", "format": "markdown"})
    chunks = Splitter(200, 0, count).split_one(doc)
    by_heading = {c.metadata.get("headings"): c for c in chunks}
    assert set(by_heading) == {None, "Install", "Install > Linux", "Usage"}
    linux = by_heading["Install > Linux"]
    assert linux.page_content == "Install > Linux\n\nUse the package manager."
    assert count(linux.page_content) <= 200
    for chunk in chunks:
        start, end = chunk.metadata["start_index"], chunk.metadata["end_index"]
        assert MARKDOWN[start:end] == body(chunk)
        first_line = MARKDOWN.splitlines()[chunk.metadata["start_line"] - 1]
        assert body(chunk).splitlines()[0] in first_line


def test_heading_line_counts_against_the_chunk_size():
    long_heading = "A heading with quite a number of words in it for the budget"
    text = f"# {long_heading}\n\n" + " ".join(f"Fact {i} is stated here plainly." for i in range(100))
    chunks = Splitter(48, 0, count).split_one(Document(page_content=text, metadata={"format": "markdown"}))
    assert all(count(c.page_content) <= 48 for c in chunks)


def test_plain_text_hashes_are_not_headings():
    doc = Document(page_content="# not a heading in a .txt file\nbody", metadata={"format": "text"})
    [chunk] = Splitter(64, 0, count).split_one(doc)
    assert "headings" not in chunk.metadata
    assert chunk.metadata["start_line"] == 1
    assert chunk.metadata["end_line"] == 2


def test_blank_documents_give_no_chunks():
    assert Splitter(64, 0, count).split_one(Document(page_content="  \n\n ", metadata={"format": "text"})) == []


@pytest.mark.parametrize(("size", "overlap"), [(8, 0), (64, 32), (64, -1)])
def test_bad_settings_fail_at_construction(size, overlap):
    with pytest.raises(ConfigurationError):
        Splitter(size, overlap, count)


def test_config_round_trips_and_rejects_typos():
    config = KnowledgeBaseConfig(chunk_size=128, chunk_overlap=16)
    assert KnowledgeBaseConfig.model_validate(config.model_dump()) == config
    with pytest.raises(ValueError, match="chunk_overlap"):
        KnowledgeBaseConfig(chunk_size=64, chunk_overlap=32)
    with pytest.raises(ValueError, match="chunk_sise"):
        KnowledgeBaseConfig(chunk_sise=64)
