"""A real remote: llama-cpp-python's OpenAI-compatible server on 127.0.0.1, reached over HTTP with langchain-openai.

The local route is the packaged SmolLM2-135M in-process; the remote serves Qwen2.5-Coder-0.5B. One test kills the
server while a request is in flight and checks that the router falls back to the local route and records why.
"""

from __future__ import annotations

import functools
import operator
import threading
import time

import pytest

from slmkit.agent import ChatLocalSLM, resolve_model_path
from slmkit.routing import Keywords, LlamaServer, Route, RoutedChatModel, RoutingDecision, RoutingPolicy

pytestmark = [pytest.mark.model, pytest.mark.timeout(600)]
REMOTE_MODEL = "qwen2.5-coder-0.5b-instruct"


@pytest.fixture(scope="module")
def server():
    with LlamaServer(resolve_model_path(REMOTE_MODEL), n_ctx=2048, n_threads=2) as running:
        yield running


def routed_with(server: LlamaServer, **chat_kwargs) -> RoutedChatModel:
    remote = server.chat_model(**{"temperature": 0, "max_tokens": 24, "timeout": 240, **chat_kwargs})
    policy = RoutingPolicy(
        routes={
            "slm": Route(model=ChatLocalSLM(temperature=0, max_tokens=16, n_ctx=2048), local=True),
            "llm": Route(model=remote, input_usd_per_1k=0.0005, output_usd_per_1k=0.0015, context_window=2048),
        },
        rules=[Keywords(words=["code", "python"], route="llm")],
    )
    return RoutedChatModel(policy=policy)


def test_server_lists_its_model(server):
    import json
    import urllib.request

    with urllib.request.urlopen(f"{server.base_url}/models", timeout=10) as response:
        ids = [m["id"] for m in json.load(response)["data"]]
    assert ids == [server.alias]


def test_requests_are_routed_over_http_with_exact_costs(server):
    routed = routed_with(server)
    remote = routed.invoke("Write python code that prints hello.")
    decision = RoutingDecision.from_message(remote)
    assert (decision.route, decision.rule) == ("llm", "Keywords")
    assert remote.content
    attempt = decision.attempts[0]
    assert attempt.exact_tokens
    assert attempt.input_tokens > 0
    assert attempt.output_tokens > 0
    assert decision.actual_cost_usd == pytest.approx(
        (attempt.input_tokens * 0.0005 + attempt.output_tokens * 0.0015) / 1000
    )
    local = RoutingDecision.from_message(routed.invoke("Name a colour."))
    assert local.route == "slm"
    assert local.actual_cost_usd == 0.0
    report = routed.stats.report()
    assert report.routes["llm"].share == 0.5
    assert report.saved_usd > 0


def test_streaming_over_http_ends_with_the_decision(server):
    routed = routed_with(server, stream_usage=True)
    chunks = list(routed.stream("Write python code that adds two numbers."))
    assert len(chunks) > 2
    full = functools.reduce(operator.add, chunks)
    decision = RoutingDecision.from_message(full)
    assert decision.route == "llm"
    assert full.content
    # llama.cpp's server sends no usage when streaming: the router falls back to tiktoken estimates.
    assert decision.attempts[0].output_tokens > 0


def test_remote_killed_mid_run_falls_back_to_local():
    with LlamaServer(resolve_model_path(REMOTE_MODEL), n_ctx=2048, n_threads=1) as doomed:
        # Qwen's end tokens banned and 1,000 tokens asked for: still generating when the server dies, however fast
        # the machine (a short answer could finish within the 1.5 s before the kill).
        never_ends = {151643: -100, 151645: -100}  # <|endoftext|>, <|im_end|>
        routed = routed_with(doomed, max_tokens=1000, logit_bias=never_ends)
        results: dict[str, object] = {}

        def ask() -> None:
            results["message"] = routed.invoke("Write python code for a long program with many functions.")

        worker = threading.Thread(target=ask)
        started = time.monotonic()
        worker.start()
        time.sleep(1.5)
        doomed.kill()
        worker.join(timeout=120)
        assert not worker.is_alive(), "the routed call did not return after the remote died"
        decision = RoutingDecision.from_message(results["message"])  # type: ignore[arg-type]
        assert decision.planned_route == "llm"
        assert decision.route == "slm"
        failed = decision.attempts[0]
        assert (failed.route, failed.ok, failed.failure) == ("llm", False, "connection")
        assert time.monotonic() - started < 120
        # The next request finds the port closed and falls back straight away.
        after = RoutingDecision.from_message(routed.invoke("python code for hello world"))
        assert after.route == "slm"
        assert after.attempts[0].failure == "connection"
        assert routed.stats.report().fallbacks == 2
