"""Prompt-lookup decoding on the real packaged models: the same greedy text as plain decoding, token for token.

Plain and lookup share the settings lookup needs (flash attention, q8_0 KV cache), under which llama.cpp computes
a batch row exactly as a single token; so not only the text but every log-probability must be equal.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from slmkit.agent import ChatLocalSLM
from slmkit.agent.llama_runtime import SamplingParams

pytestmark = pytest.mark.model

SMOL = "smollm2-135m-instruct"
QWEN = "qwen2.5-coder-0.5b-instruct"
DOCS = Path(__file__).resolve().parents[2] / "examples" / "docs"
FAQ = (DOCS / "product-faq.txt").read_text()
HANDBOOK = (DOCS / "handbook.md").read_text()
INSTRUCTIONS = "Answer the question with one sentence copied from the sources. Cite the source number like [1]."


def _qa(question: str) -> list:
    sources = f"Sources:\n[1] {FAQ}\n[2] {HANDBOOK}\n\nQuestion: {question}"
    return [SystemMessage(INSTRUCTIONS), HumanMessage(sources)]


PROMPTS = {
    # answers that copy long spans of the prompt
    "warranty": _qa("How long is the GridBox 3 warranty?"),
    "e17": _qa("What does error code E17 mean?"),
    "install": _qa("Can I install the GridBox 3 myself?"),
    "repeat": [HumanMessage(f"Repeat this text word for word:\n\n{FAQ[:700]}")],
    "quote": [
        SystemMessage(f"Reference:\n{HANDBOOK}"),
        HumanMessage("Quote the first two sentences of the reference."),
    ],
    # answers that copy little or nothing
    "story": [HumanMessage("Write a short story about a lighthouse keeper.")],
    "colours": [HumanMessage("Name five colours and one thing of each colour.")],
    "count": [HumanMessage("Count from 1 to 30, separated by commas.")],
    "code": [HumanMessage("Write a Python function that reverses a string, with a docstring.")],
}


def _pair(model: str, max_tokens: int = 96, **settings) -> tuple[ChatLocalSLM, ChatLocalSLM]:
    plain = ChatLocalSLM(
        model=model,
        temperature=0,
        max_tokens=max_tokens,
        prompt_lookup=0,
        logprobs=True,
        flash_attn=True,
        kv_cache="q8_0",
        **settings,
    )
    return plain, plain.model_copy(update={"prompt_lookup": 10})


def _tokens(message) -> list[str]:
    return [t["token"] for t in message.response_metadata["logprobs"]["content"]]


def _assert_same_outputs(plain: ChatLocalSLM, lookup: ChatLocalSLM, names) -> dict[str, int]:
    accepted = {}
    for name in names:
        messages = PROMPTS[name]
        plain.load().llama.reset()
        a = plain.invoke(messages)
        plain.load().llama.reset()
        b = lookup.invoke(messages)
        assert b.content == a.content, name
        assert _tokens(b) == _tokens(a), name
        assert b.usage_metadata == a.usage_metadata, name
        assert b.response_metadata["finish_reason"] == a.response_metadata["finish_reason"], name
        # Verified rows are computed bit for bit as single tokens: the log-probabilities are equal too.
        lp_a = [t["logprob"] for t in a.response_metadata["logprobs"]["content"]]
        lp_b = [t["logprob"] for t in b.response_metadata["logprobs"]["content"]]
        assert lp_b == lp_a, name
        assert "prompt_lookup" not in a.response_metadata
        accepted[name] = b.response_metadata.get("prompt_lookup", {}).get("accepted", 0)
    return accepted


@pytest.mark.parametrize("model", [SMOL, QWEN])
def test_lookup_gives_the_plain_greedy_output_token_for_token(model):
    accepted = _assert_same_outputs(*_pair(model), PROMPTS)
    assert accepted["repeat"] > 40, accepted
    assert accepted["warranty"] > 0, accepted


def test_two_threads_give_the_same_output_too():
    # With two threads llama.cpp splits a lone token's attention over a long cache across them (with an F16 cache):
    # the QA prompts are ~1,000 tokens, past the 512 where that starts.
    # Kept short: two llama.cpp threads crawl when the machine's cores are busy with other work.
    accepted = _assert_same_outputs(*_pair(SMOL, max_tokens=48, n_threads=2), ["warranty", "repeat"])
    assert accepted["repeat"] > 20, accepted


def test_the_draft_is_capped_at_the_largest_exact_batch():
    _, lookup = _pair(QWEN)
    local = lookup.load()
    n_draft = local._draft_length(SamplingParams(temperature=0, prompt_lookup=10), None)
    # Calibrated once per model: batches of 2, 3, ... rows against single tokens, bit for bit. On x86, llama.cpp
    # repacks Qwen's Q4_K tensors for a GEMM kernel that starts at 4 rows, and its sums differ from one row's.
    exact = local._exact_batches[11]
    assert 1 <= exact <= 11
    assert n_draft == exact - 1
    assert local._draft_length(SamplingParams(temperature=0, prompt_lookup=1), None) == min(1, exact - 1)


def test_max_tokens_and_stops_are_kept_exactly():
    plain, lookup = _pair(SMOL)
    messages = PROMPTS["repeat"]
    for kwargs in ({"max_tokens": 1}, {"max_tokens": 7}, {"max_tokens": 23}, {"stop": ["kWh"]}, {"stop": ["\n\n"]}):
        a = plain.invoke(messages, **kwargs)
        b = lookup.invoke(messages, **kwargs)
        assert b.content == a.content, kwargs
        assert b.usage_metadata["output_tokens"] == a.usage_metadata["output_tokens"], kwargs
        assert b.response_metadata["finish_reason"] == a.response_metadata["finish_reason"], kwargs
    assert lookup.invoke(messages, max_tokens=7).usage_metadata["output_tokens"] == 7


def test_streamed_lookup_text_equals_invoked_text():
    _, lookup = _pair(SMOL)
    messages = PROMPTS["repeat"]
    whole = lookup.invoke(messages, stop=["Installation"]).content
    chunks = [c.content for c in lookup.stream(messages, stop=["Installation"])]
    assert len(chunks) > 3
    assert "".join(chunks) == whole


def test_the_prefix_cache_still_works_after_lookup():
    _, lookup = _pair(SMOL, max_tokens=40)
    local = lookup.load()
    local.llama.reset()
    cold = lookup.invoke(PROMPTS["warranty"])
    again = lookup.invoke(PROMPTS["warranty"])
    other = lookup.invoke(PROMPTS["e17"])
    assert again.content == cold.content
    prompt_tokens = again.usage_metadata["input_tokens"]
    assert again.usage_metadata["input_token_details"]["cache_read"] == prompt_tokens - 1
    assert other.usage_metadata["input_token_details"]["cache_read"] > 0.8 * prompt_tokens
    # The cache holds exactly the tokens llama-cpp-python thinks it holds: a plain call on top agrees.
    plain = lookup.model_copy(update={"prompt_lookup": 0})
    local.llama.reset()
    fresh = plain.invoke(PROMPTS["e17"])
    assert plain.invoke(PROMPTS["e17"]).content == fresh.content == other.content


def test_sampling_and_grammars_use_the_plain_loop():
    _, lookup = _pair(SMOL)
    hot = lookup.invoke(PROMPTS["repeat"], temperature=0.8, seed=3, max_tokens=20)
    assert "prompt_lookup" not in hot.response_metadata
    json_mode = lookup.invoke(PROMPTS["repeat"], response_format={"type": "json_object"}, max_tokens=20)
    assert "prompt_lookup" not in json_mode.response_metadata
    greedy = lookup.invoke(PROMPTS["repeat"], max_tokens=20)
    assert greedy.response_metadata["prompt_lookup"]["drafted"] > 0


def test_without_the_exact_settings_lookup_is_ignored_with_a_warning(caplog):
    plain = ChatLocalSLM(model=SMOL, temperature=0, max_tokens=30, prompt_lookup=0)
    lookup = plain.model_copy(update={"prompt_lookup": 10})
    lookup.load()._warned_lookup = False  # the model may be shared with earlier tests
    with caplog.at_level(logging.WARNING, logger="slmkit.agent.llama_runtime"):
        b = lookup.invoke(PROMPTS["repeat"])
        lookup.invoke(PROMPTS["repeat"])
    assert "prompt_lookup" not in b.response_metadata
    assert b.content == plain.invoke(PROMPTS["repeat"]).content
    warnings = [r for r in caplog.records if "prompt_lookup=10 is ignored" in r.getMessage()]
    assert len(warnings) == 1, "warned once per loaded model"
