"""ChatLocalSLM against the real packaged models: what the standard suite does not pin down."""

from __future__ import annotations

import asyncio
import math
import shutil

import pytest
from langchain_core.exceptions import ContextOverflowError as LCContextOverflowError
from langchain_core.messages import AIMessageChunk, HumanMessage, SystemMessage
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from slmkit.agent import ChatLocalSLM, resolve_model_path
from slmkit.agent.llama_runtime import acquire
from slmkit.core.errors import ContextOverflowError, ModelIntegrityError, ModelLoadError
from slmkit.core.tokens import GGUFTokenCounter

SMOL = "smollm2-135m-instruct"
QWEN = "qwen2.5-coder-0.5b-instruct"


@pytest.fixture(scope="module")
def llm() -> ChatLocalSLM:
    return ChatLocalSLM(model=SMOL, temperature=0, max_tokens=48)


def test_instances_with_equal_settings_share_one_loaded_model(llm):
    other = ChatLocalSLM(model=SMOL, temperature=0.9, max_tokens=5, seed=1)
    assert other.load() is llm.load(), "sampling settings must not cause a second load"
    bigger = ChatLocalSLM(model=SMOL, n_ctx=2048)
    assert bigger.load() is not llm.load(), "a different context size is a different llama.cpp context"


def test_a_gguf_path_works_like_its_catalogue_id():
    path = resolve_model_path(SMOL)
    answer = ChatLocalSLM(model=str(path), temperature=0, max_tokens=8).invoke("Say hello.")
    assert answer.content.strip()
    assert answer.response_metadata["model_name"] == str(path)


def test_answers_are_real_and_metadata_complete(llm):
    msg = llm.invoke([SystemMessage("Answer in one word."), HumanMessage("What is the capital of France?")])
    assert "paris" in msg.content.lower()
    meta = msg.response_metadata
    assert meta["model_name"] == SMOL
    assert meta["finish_reason"] == "stop"
    assert msg.usage_metadata["output_tokens"] > 0
    conf = meta["confidence"]
    assert 0 < conf["min_prob"] <= conf["geometric_mean_prob"] <= conf["mean_prob"] <= 1


def test_usage_counts_are_exact(llm):
    local = llm.load()
    messages = [HumanMessage("Count to three.")]
    msg = llm.invoke(messages)
    assert msg.usage_metadata["input_tokens"] == len(local.render([{"role": "user", "content": "Count to three."}]))
    assert llm.get_num_tokens_from_messages(messages) == msg.usage_metadata["input_tokens"]
    generated = local.tokenize(msg.content)
    # Re-tokenising text can merge or split a token at the edges; the count must still be close.
    assert abs(len(generated) - msg.usage_metadata["output_tokens"]) <= 2


def test_max_tokens_stops_with_length(llm):
    msg = llm.invoke("Write a long story about a dragon.", max_tokens=5)
    assert msg.usage_metadata["output_tokens"] == 5
    assert msg.response_metadata["finish_reason"] == "length"


def test_stop_sequence_is_honoured_and_excluded(llm):
    free = llm.invoke("List the numbers from 1 to 10, separated by commas.").content
    assert "4" in free, free
    cut = llm.invoke("List the numbers from 1 to 10, separated by commas.", stop=["4"])
    assert "4" not in cut.content
    assert cut.content == free[: free.index("4")]
    assert cut.response_metadata["finish_reason"] == "stop"


def test_streamed_text_equals_invoked_text_even_with_stops(llm):
    prompt = "List the numbers from 1 to 10, separated by commas."
    whole = llm.invoke(prompt, stop=[", 6"]).content
    chunks = [c.content for c in llm.stream(prompt, stop=[", 6"])]
    assert len(chunks) > 3
    assert "".join(chunks) == whole


def test_seed_makes_sampling_reproducible():
    hot = ChatLocalSLM(model=SMOL, temperature=1.2, max_tokens=24)
    prompt = "Invent a name for a cat."
    a = hot.invoke(prompt, seed=11).content
    b = hot.invoke(prompt, seed=11).content
    others = {hot.invoke(prompt, seed=s).content for s in (12, 13, 14)}
    assert a == b
    assert len(others | {a}) > 1, "different seeds should give different samples at temperature 1.2"


def test_confidence_matches_llama_cpp_own_logprobs():
    """Our per-token log-probabilities equal llama-cpp-python's (computed with logits_all=True)."""
    from llama_cpp import Llama

    llm = ChatLocalSLM(model=SMOL, temperature=0, max_tokens=12, repeat_penalty=1.0, logprobs=True)
    msg = llm.invoke("Name three colours.")
    ours = [t["logprob"] for t in msg.response_metadata["logprobs"]["content"]]
    local = llm.load()
    prompt = local.render([{"role": "user", "content": "Name three colours."}])
    ref = Llama(model_path=str(local.path), n_ctx=512, logits_all=True, verbose=False)
    out = ref.create_completion(prompt, max_tokens=12, temperature=0, repeat_penalty=1.0, logprobs=1)
    theirs = out["choices"][0]["logprobs"]["token_logprobs"]
    n = min(len(ours), len(theirs))
    assert n >= 5
    for a, b in zip(ours[:n], theirs[:n], strict=True):
        assert math.isclose(a, b, abs_tol=2e-2), (ours, theirs)
    assert math.isclose(msg.response_metadata["confidence"]["mean_logprob"], sum(ours) / len(ours), rel_tol=1e-6)


def test_repeated_prefix_is_read_from_the_kv_cache():
    llm = ChatLocalSLM(model=SMOL, temperature=0, max_tokens=4, n_ctx=3072)
    context = "Background: " + " ".join(f"Fact {i}: the value of item {i} is {i * 7}." for i in range(90))
    first = llm.invoke([SystemMessage(context), HumanMessage("What is the value of item 3?")])
    second = llm.invoke([SystemMessage(context), HumanMessage("What is the value of item 5?")])
    prompt_tokens = second.usage_metadata["input_tokens"]
    cached = second.usage_metadata["input_token_details"]["cache_read"]
    assert prompt_tokens > 1000
    assert cached > 0.95 * prompt_tokens - 20
    assert second.response_metadata["timings"]["prompt_ms"] < first.response_metadata["timings"]["prompt_ms"]


def test_context_overflow_is_a_clear_langchain_error():
    llm = ChatLocalSLM(model=SMOL, n_ctx=256, max_tokens=8)
    with pytest.raises(ContextOverflowError) as info:
        llm.invoke("word " * 400)
    assert isinstance(info.value, LCContextOverflowError)
    assert "n_ctx" in str(info.value)
    assert "256" in str(info.value)
    # The model is still usable afterwards.
    assert llm.invoke("Say hi.").content


def test_answer_is_cut_at_the_context_window_not_an_error():
    llm = ChatLocalSLM(model=SMOL, n_ctx=128, max_tokens=None, temperature=0)
    msg = llm.invoke("Write a very long essay about the history of Rome.")
    window = llm.load().n_ctx  # llama.cpp rounds the window up to its own granularity
    assert 128 <= window <= 512
    assert msg.usage_metadata["total_tokens"] <= window
    assert msg.response_metadata["finish_reason"] in ("length", "stop")


@tool
def get_weather(city: str, unit: str = "celsius") -> str:
    """Get the current weather in a city."""
    return f"sunny in {city}"


@tool
def add(a: int, b: int) -> int:
    """Add two integers a and b."""
    return a + b


def test_forced_tool_calls_follow_the_schema(llm):
    msg = llm.bind_tools([get_weather, add], tool_choice="add").invoke("What is 17 plus 25?")
    assert msg.tool_calls[0]["name"] == "add"
    assert set(msg.tool_calls[0]["args"]) == {"a", "b"}
    assert all(isinstance(v, int) for v in msg.tool_calls[0]["args"].values())
    assert msg.response_metadata["finish_reason"] == "tool_calls"


def test_tool_calls_stream_as_tool_call_chunks(llm):
    chunks = list(llm.bind_tools([get_weather], tool_choice="any").stream("Weather in Oslo?"))
    full = chunks[0]
    for c in chunks[1:]:
        full = full + c
    assert isinstance(full, AIMessageChunk)
    assert full.tool_calls[0]["name"] == "get_weather"
    assert "city" in full.tool_calls[0]["args"]


def test_tool_round_trip_continues_the_conversation(llm):
    bound = llm.bind_tools([add], tool_choice="any")
    question = HumanMessage("What is 2 plus 3?")
    call = bound.invoke([question])
    result = add.invoke(call.tool_calls[0])
    answer = llm.invoke([question, call, result])
    assert isinstance(answer.content, str)
    assert answer.content.strip()


class City(BaseModel):
    """A city."""

    name: str = Field(description="name of the city")
    country: str = Field(description="country it is in")
    population_millions: float = Field(description="population in millions")


@pytest.mark.parametrize("model_id", [SMOL, QWEN])
@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
def test_structured_output_always_parses(model_id, method):
    llm = ChatLocalSLM(model=model_id, temperature=0, max_tokens=80)
    city = llm.with_structured_output(City, method=method).invoke("Tell me about Paris.")
    assert isinstance(city, City)
    assert city.name


def test_structured_output_include_raw():
    llm = ChatLocalSLM(model=SMOL, temperature=0, max_tokens=80)
    out = llm.with_structured_output(City, include_raw=True).invoke("Tell me about Rome.")
    assert isinstance(out["parsed"], City)
    assert out["parsing_error"] is None
    assert out["raw"].usage_metadata["output_tokens"] > 0


def test_exact_token_count_uses_the_model_tokenizer(llm):
    text = "Grammar-constrained decoding keeps a 135M model's JSON valid."
    local = llm.load()
    assert llm.get_num_tokens(text) == len(local.tokenize(text))
    assert GGUFTokenCounter(resolve_model_path(SMOL)).count(text) == llm.get_num_tokens(text)


async def test_async_calls_do_not_block_the_loop(llm):
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    answers = await llm.abatch(["Say one.", "Say two."])
    chunks = [c async for c in llm.astream("Say three.")]
    task.cancel()
    assert all(a.content for a in answers)
    assert chunks
    assert ticks > 5, "generation must run off the event loop"


def test_two_threads_share_a_model_safely(llm):
    from concurrent.futures import ThreadPoolExecutor

    prompts = [f"What is {i} plus {i}?" for i in range(4)]
    expected = [llm.invoke(p).content for p in prompts]
    with ThreadPoolExecutor(max_workers=2) as pool:
        got = list(pool.map(lambda p: llm.invoke(p).content, prompts))
    assert got == expected


def test_corrupt_gguf_path_gives_an_actionable_error(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(ModelIntegrityError, match="not a GGUF file"):
        ChatLocalSLM(model=str(bad)).invoke("hi")


def test_truncated_gguf_fails_to_load_with_advice(tmp_path):
    source = resolve_model_path(SMOL)
    truncated = tmp_path / "truncated.gguf"
    with source.open("rb") as src, truncated.open("wb") as dst:
        dst.write(src.read(2_000_000))
    with pytest.raises(ModelLoadError, match="could not load"):
        ChatLocalSLM(model=str(truncated)).invoke("hi")


def test_copied_model_file_loads(tmp_path):
    copy = tmp_path / "copy.gguf"
    shutil.copyfile(resolve_model_path(SMOL), copy)
    local = acquire(ChatLocalSLM(model=str(copy))._settings())
    assert local.n_ctx == 4096
    assert local.has_chat_template
