"""The OpenAI-compatible server over a scripted assistant: wire format, streaming, errors, one model at a time.

The assistant here is a fake that answers from a script and calls a fake LangChain chat model (so usage counting
goes through real callbacks); tests/integration/test_serve.py runs the real ``slmkit serve`` with the local SLM.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time

import httpx
import openai
import pytest
from fastapi.testclient import TestClient
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from slmkit.agent.serve import create_app
from slmkit.core.errors import ContextOverflowError, GuardBlockedError


class Citation(BaseModel):
    marker: int
    source: str
    page: int | None
    chunk_id: str
    snippet: str


class Answer(BaseModel):
    text: str
    citations: list[Citation]
    routing: None = None
    guard_report: None = None
    timings: dict[str, float]
    abstained: bool


class TokenEvent(BaseModel):
    type: str = "token"
    text: str


class AnswerEvent(BaseModel):
    type: str = "answer"
    answer: Answer


TEXT = "Refunds are paid within 14 days [1]."
CITATION = Citation(marker=1, source="examples/docs/product-faq.txt", page=None, chunk_id="c1", snippet="Refunds...")


class RecordingModel(GenericFakeChatModel):
    """A fake chat model that remembers the keyword arguments of each call."""

    seen: list = Field(default_factory=list)

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.seen.append({**kwargs, **({"stop": stop} if stop else {})})
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


USAGE = {"input_tokens": 42, "output_tokens": 9, "total_tokens": 51}


class ScriptedAssistant:
    """Answers TEXT; records calls; optional failure before or after the first token; optional gate to block on."""

    def __init__(self, *, fail=None, fail_after_first=False, gate=None):
        self.calls = []
        self.fail = fail
        self.fail_after_first = fail_after_first
        self.gate = gate
        self.running = 0
        self.most_running = 0
        self.closed = 0
        message = AIMessage(TEXT, usage_metadata=USAGE, response_metadata={"model_name": "fake-slm"})
        self.model = RecordingModel(messages=itertools.repeat(message))

    def _model_call(self):
        self.model.invoke("prompt")

    def _answer(self):
        return Answer(text=TEXT, citations=[CITATION], timings={"total_ms": 12.0}, abstained=False)

    def ask(self, question, *, history=None):
        self.calls.append((question, list(history or [])))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            if self.gate is not None:
                assert self.gate.wait(10)
            if self.fail is not None:
                raise self.fail
            self._model_call()
            return self._answer()
        finally:
            self.running -= 1

    def stream(self, question, *, history=None):
        self.calls.append((question, list(history or [])))
        if self.fail is not None and not self.fail_after_first:
            raise self.fail
        try:
            for i, word in enumerate(TEXT.split(" ")):
                if i == 1 and self.fail is not None:
                    raise self.fail
                if self.gate is not None:
                    assert self.gate.wait(10)
                yield TokenEvent(text=word if i == 0 else " " + word)
            self._model_call()
            yield AnswerEvent(answer=self._answer())
        finally:
            self.closed += 1


def user(text):
    return {"role": "user", "content": text}


@pytest.fixture
def assistant():
    return ScriptedAssistant()


@pytest.fixture
def client(assistant):
    with TestClient(create_app(assistant, model_name="slmkit")) as c:
        yield c


@pytest.fixture
def oai(client):
    return openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client, max_retries=0)


def sse_events(text):
    assert text.endswith("\n\n")
    blocks = text.strip("\n").split("\n\n")
    assert all(b.startswith("data: ") for b in blocks)
    return [b.removeprefix("data: ") for b in blocks]


# -- models ----------------------------------------------------------------------------------------------------
def test_models_lists_the_one_model(oai):
    models = oai.models.list()
    assert [m.id for m in models.data] == ["slmkit"]
    assert oai.models.retrieve("slmkit").id == "slmkit"


def test_unknown_model_is_a_404_in_openais_shape(client, oai):
    with pytest.raises(openai.NotFoundError) as info:
        oai.chat.completions.create(model="gpt-4o", messages=[user("hi")])
    assert info.value.code == "model_not_found"
    assert "'slmkit'" in info.value.message
    body = client.get("/v1/models/gpt-4o").json()
    assert body["error"]["type"] == "invalid_request_error"


# -- non-streaming ---------------------------------------------------------------------------------------------
def test_completion_has_text_sources_usage_and_extras(oai, assistant):
    completion = oai.chat.completions.create(
        model="slmkit",
        messages=[
            {"role": "system", "content": "Be brief."},
            user("How long do refunds take?"),
            {"role": "assistant", "content": "14 days."},
            {"role": "user", "content": [{"type": "text", "text": "And for "}, {"type": "text", "text": "gifts?"}]},
        ],
        max_tokens=16,
        temperature=0.3,
        user="someone",  # accepted and ignored, as clients send it
    )
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.choices[0].message.content == TEXT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == 42
    assert completion.usage.completion_tokens == 9
    assert completion.usage.total_tokens == 51
    extra = completion.model_extra
    assert extra["sources"] == [CITATION.model_dump()]
    assert extra["slmkit"]["abstained"] is False
    assert extra["slmkit"]["timings"] == {"total_ms": 12.0}
    assert assistant.model.seen == [{"max_tokens": 16, "temperature": 0.3}]  # the request's settings reach the model
    question, history = assistant.calls[0]
    assert question == "And for gifts?"
    assert history == [SystemMessage("Be brief."), HumanMessage("How long do refunds take?"), AIMessage("14 days.")]


# -- streaming -------------------------------------------------------------------------------------------------
def test_openai_client_streams_tokens_then_sources(oai):
    stream = oai.chat.completions.create(
        model="slmkit", messages=[user("How long?")], stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == TEXT
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason][-1]
    assert final.choices[0].finish_reason == "stop"
    assert final.model_extra["sources"][0]["marker"] == 1
    assert chunks[-1].choices == []
    assert chunks[-1].usage.total_tokens == 51
    assert len({c.id for c in chunks}) == 1


def test_sampling_settings_reach_the_model_of_this_request_only(oai, assistant):
    oai.chat.completions.create(
        model="slmkit", messages=[user("q")], max_completion_tokens=8, max_tokens=99, top_p=0.5, seed=7, stop="\n"
    )
    oai.chat.completions.create(model="slmkit", messages=[user("q")], stream=True).close()
    oai.chat.completions.create(model="slmkit", messages=[user("q")])
    assert assistant.model.seen[0] == {"max_tokens": 8, "top_p": 0.5, "seed": 7, "stop": ["\n"]}
    assert assistant.model.seen[-1] == {}  # nothing set: the server's own settings


def test_sse_wire_format_is_openais(client):
    response = client.post("/v1/chat/completions", json={"model": "slmkit", "messages": [user("q")], "stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[1]["choices"][0]["delta"] == {"content": "Refunds"}
    for chunk in chunks:
        assert chunk["object"] == "chat.completion.chunk"
        assert "usage" not in chunk  # only with stream_options.include_usage
        assert chunk["choices"][0]["logprobs"] is None
    assert [c["choices"][0]["finish_reason"] for c in chunks].count("stop") == 1
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop", "logprobs": None}
    assert "sources" in chunks[-1]
    assert all("sources" not in c for c in chunks[:-1])


# -- bad requests ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "param", "needle"),
    [
        ({"model": "slmkit", "messages": []}, "messages", "at least 1"),
        ({"messages": [user("q")]}, "model", "Field required"),
        ({"model": "slmkit", "messages": [{"role": "assistant", "content": "hi"}]}, "messages[0].role", "user"),
        ({"model": "slmkit", "messages": [user("   ")]}, "messages[0]", "no text"),
        ({"model": "slmkit", "messages": [user("q")], "n": 2}, "n", "n=1"),
        ({"model": "slmkit", "messages": [user("q")], "max_tokens": 0}, "max_tokens", "greater than or equal"),
        ({"model": "slmkit", "messages": [{"role": "robot", "content": "q"}]}, "messages.0.role", "Input should be"),
        (
            {"model": "slmkit", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "messages[0].content",
            "only text",
        ),
        ({"model": "slmkit", "messages": [user("q")], "tools": [{"type": "function"}]}, "tools", "not supported"),
    ],
)
def test_bad_requests_get_400_in_openais_shape(client, body, param, needle):
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert needle in error["message"]


def test_malformed_json_is_a_400(client):
    response = client.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_openai_client_raises_bad_request_error(oai):
    with pytest.raises(openai.BadRequestError, match="Only n=1"):
        oai.chat.completions.create(model="slmkit", messages=[user("q")], n=3)


def test_unknown_path_and_wrong_method(client):
    missing = client.get("/v1/embeddings")
    assert missing.status_code == 404
    assert "/v1/chat/completions" in missing.json()["error"]["message"]
    wrong = client.get("/v1/chat/completions")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["type"] == "invalid_request_error"


# -- assistant failures ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (GuardBlockedError("The PII guard blocks CREDIT_CARD in requests."), 400, "guard_blocked"),
        (ContextOverflowError(5000, 4096), 400, "context_length_exceeded"),
        (RuntimeError("secret internals"), 500, None),
    ],
)
def test_failures_before_the_first_token_get_their_status(error, status, code, stream):
    app = create_app(ScriptedAssistant(fail=error))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post(
            "/v1/chat/completions", json={"model": "slmkit", "messages": [user("q")], "stream": stream}
        )
    assert response.status_code == status
    body = response.json()["error"]
    assert body["code"] == code
    if status == 500:
        assert "secret internals" not in body["message"]
        assert "RuntimeError" in body["message"]
    else:
        assert body["message"] == str(error)


def test_failure_mid_stream_ends_with_an_error_event(oai, assistant):
    assistant.fail = RuntimeError("boom")
    assistant.fail_after_first = True
    stream = oai.chat.completions.create(model="slmkit", messages=[user("q")], stream=True)
    received = []

    def read():
        for chunk in stream:
            received.append(chunk.choices[0].delta.content)

    with pytest.raises(openai.APIError, match="RuntimeError"):
        read()
    assert received == ["", "Refunds"]
    assert assistant.closed == 1


# -- API key ---------------------------------------------------------------------------------------------------
@pytest.fixture
def keyed():
    with TestClient(create_app(ScriptedAssistant(), api_key="s3cret")) as client:
        yield client


def test_api_key_is_required_when_set(keyed):
    denied = keyed.get("/v1/models")
    assert denied.status_code == 401
    assert denied.json()["error"]["code"] == "invalid_api_key"
    assert denied.headers["www-authenticate"] == "Bearer"
    wrong = keyed.get("/v1/models", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    ok = keyed.get("/v1/models", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    assert keyed.get("/v1/models", headers={"Authorization": "bearer   s3cret "}).status_code == 200  # RFC 6750


@pytest.mark.parametrize("header", ["s3cret", "Basic s3cret", "Token s3cret", "Bearer", "Bearers3cret", "Bearer s3cre"])
def test_only_a_bearer_token_counts(keyed, header):
    response = keyed.get("/v1/models", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/docs"),
        ("GET", "/redoc"),
        ("GET", "/openapi.json"),
        ("GET", "/docs/oauth2-redirect"),
        ("GET", "/v1/models"),
        ("GET", "/v1/models/slmkit"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/embeddings"),  # unknown paths too: nothing about the server without the key
    ],
)
def test_every_route_but_health_needs_the_key(keyed, method, path):
    assert keyed.request(method, path).status_code == 401
    authorized = keyed.request(method, path, headers={"Authorization": "Bearer s3cret"})
    assert authorized.status_code != 401


def test_health_answers_without_the_key(keyed):
    response = keyed.get("/health")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_openai_client_with_the_key(keyed):
    good = openai.OpenAI(base_url="http://testserver/v1", api_key="s3cret", http_client=keyed, max_retries=0)
    assert good.chat.completions.create(model="slmkit", messages=[user("q")]).choices[0].message.content == TEXT
    bad = openai.OpenAI(base_url="http://testserver/v1", api_key="guess", http_client=keyed, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_an_empty_key_is_refused_at_construction():
    from slmkit.core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="api_key is empty"):
        create_app(ScriptedAssistant(), api_key=" ")


# -- limits ----------------------------------------------------------------------------------------------------
def test_an_oversized_body_is_a_413_before_it_is_parsed():
    assistant = ScriptedAssistant()
    with TestClient(create_app(assistant, max_body_bytes=10_000)) as client:
        big = {"model": "slmkit", "messages": [user("word " * 5_000)]}
        declared = client.post("/v1/chat/completions", json=big)
        assert declared.status_code == 413
        error = declared.json()["error"]
        assert (error["type"], error["code"]) == ("invalid_request_error", "request_too_large")
        assert "10,000 bytes" in error["message"]

        def chunks():  # no Content-Length: counted as it arrives
            data = json.dumps(big).encode()
            for start in range(0, len(data), 4096):
                yield data[start : start + 4096]

        streamed = client.post("/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413
        assert streamed.json()["error"]["code"] == "request_too_large"
        small = client.post("/v1/chat/completions", json={"model": "slmkit", "messages": [user("q")]})
        assert small.status_code == 200
    assert len(assistant.calls) == 1


class WindowedModel(RecordingModel):
    """A fake chat model that says how large its context window is, as ChatLocalSLM does."""

    n_ctx: int = 2048


@pytest.mark.parametrize("stream", [False, True])
def test_a_question_longer_than_the_context_window_is_a_400_context_length_exceeded(stream):
    assistant = ScriptedAssistant()
    assistant.model = WindowedModel(messages=itertools.repeat(AIMessage(TEXT)))
    with TestClient(create_app(assistant)) as client:
        question = " ".join(f"word{i}" for i in range(10_000))
        response = client.post(
            "/v1/chat/completions", json={"model": "slmkit", "messages": [user(question)], "stream": stream}
        )
        assert response.status_code == 400
        error = response.json()["error"]
        assert (error["type"], error["code"], error["param"]) == (
            "invalid_request_error",
            "context_length_exceeded",
            "messages",
        )
        assert "maximum context length is 2048 tokens" in error["message"]
        assert assistant.calls == []  # refused before retrieval, guards or the model
        ok = client.post("/v1/chat/completions", json={"model": "slmkit", "messages": [user("word " * 300)]})
        assert ok.status_code == 200


def test_the_openai_client_sees_context_length_exceeded():
    assistant = ScriptedAssistant()
    assistant.model = WindowedModel(messages=itertools.repeat(AIMessage(TEXT)))
    with TestClient(create_app(assistant)) as client:
        oai = openai.OpenAI(base_url="http://testserver/v1", api_key="-", http_client=client, max_retries=0)
        with pytest.raises(openai.BadRequestError) as info:
            oai.chat.completions.create(model="slmkit", messages=[user("lorem ipsum " * 5_000)])
    assert info.value.code == "context_length_exceeded"


# -- one model, many clients -----------------------------------------------------------------------------------
async def test_calls_run_one_at_a_time_and_the_loop_stays_free():
    gate = threading.Event()
    assistant = ScriptedAssistant(gate=gate)
    app = create_app(assistant)
    transport = httpx.ASGITransport(app=app)
    body = {"model": "slmkit", "messages": [user("q")]}
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        asks = [asyncio.create_task(http.post("/v1/chat/completions", json=body)) for _ in range(3)]
        await asyncio.sleep(0.2)
        started = time.perf_counter()
        models = await http.get("/v1/models")  # answered while the model is busy
        assert models.status_code == 200
        assert time.perf_counter() - started < 1.0
        assert app.state.worker.pending == 3
        gate.set()
        responses = await asyncio.gather(*asks)
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert assistant.most_running == 1
    assert app.state.worker.pending == 0


async def test_a_full_queue_answers_503():
    gate = threading.Event()
    app = create_app(ScriptedAssistant(gate=gate), max_waiting=1)
    body = {"model": "slmkit", "messages": [user("q")]}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        first = [asyncio.create_task(http.post("/v1/chat/completions", json=body)) for _ in range(2)]
        await asyncio.sleep(0.2)
        refused = await http.post("/v1/chat/completions", json=body)
        gate.set()
        done = await asyncio.gather(*first)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "server_busy"
    assert [r.status_code for r in done] == [200, 200]


async def test_a_stream_the_client_leaves_stops_generating():
    from slmkit.agent.serve.worker import ModelWorker

    produced = []
    finished = threading.Event()

    def produce():
        try:
            for i in range(1000):
                produced.append(i)
                time.sleep(0.005)
                yield i
        finally:
            finished.set()

    worker = ModelWorker()
    items = worker.stream(produce)
    assert await anext(items) == 0
    await items.aclose()  # what a disconnect does to the response body
    assert await asyncio.to_thread(finished.wait, 5)
    assert len(produced) < 1000
    await asyncio.sleep(0.05)
    assert worker.pending == 0


def test_usage_counts_each_generated_token_once():
    from slmkit.agent.serve.usage import counting_usage

    usage = {"input_tokens": 10, "output_tokens": 3, "total_tokens": 13}
    leaf = AIMessage("a", usage_metadata=usage, response_metadata={"model_name": "slm"})
    routed = AIMessage("a", usage_metadata=usage, response_metadata={"model_name": "slm", "routing_decision": {}})
    with counting_usage() as counter:
        GenericFakeChatModel(messages=iter([leaf])).invoke("x")
        GenericFakeChatModel(messages=iter([routed])).invoke("x")  # a router repeating its route's usage
    GenericFakeChatModel(messages=iter([leaf])).invoke("x")  # outside the block
    assert (counter.prompt_tokens, counter.completion_tokens, counter.calls) == (10, 3, 1)
