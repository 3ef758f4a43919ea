"""``slmkit serve`` for real: a subprocess over a knowledge base of examples/docs, the packaged SmolLM2-135M, and the
official ``openai`` client talking to it over HTTP.

The knowledge base is the default one of a temporary ``$SLMKIT_HOME``, made with ``slmkit ingest``, so the server
runs exactly as ``python -m slmkit serve --host H --port P --api-key K`` runs for a user. The key is checked here
over real HTTP too: only ``Authorization: Bearer K`` passes, everywhere but ``/health``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest

from slmkit.routing.server import free_port

pytestmark = pytest.mark.model

DOCS = Path(__file__).resolve().parents[2] / "examples" / "docs"
QUESTION = "How long is the GridBox 3 warranty?"
KEY = "test-key-4f9c"


def slmkit(*args, env, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "slmkit", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("slmkit-home")
    env = {**os.environ, "SLMKIT_HOME": str(home)}
    env.pop("SLMKIT_API_KEY", None)
    ingested = slmkit("ingest", str(DOCS), "-q", env=env)
    assert ingested.returncode == 0, ingested.stderr
    return env


@pytest.fixture(scope="module")
def server(home):
    port = free_port()
    log = open(Path(home["SLMKIT_HOME"]) / "serve.log", "w+")  # noqa: SIM115 - read back on failure
    process = subprocess.Popen(
        [sys.executable, "-m", "slmkit", "serve", "--host", "127.0.0.1", "--port", str(port), "--api-key", KEY],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=home,
        # A shell that starts jobs in the background makes them ignore SIGINT, and Python keeps an inherited
        # SIG_IGN; give the server the default a terminal would, so Ctrl+C below means what it means for a user.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 300
    while True:
        if process.poll() is not None:
            log.seek(0)
            pytest.fail(f"slmkit serve exited with {process.returncode}:\n{log.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("slmkit serve did not answer within 300 s")
        time.sleep(0.3)
    yield base_url
    process.send_signal(signal.SIGINT)  # Ctrl+C: a graceful stop, exit code 130 like every interrupted command
    assert process.wait(30) == 130
    log.seek(0)
    output = log.read()
    log.close()
    assert "Serving 'default' as model 'slmkit' on http://127.0.0.1:" in output
    assert "Traceback" not in output


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server, api_key=KEY, max_retries=0, timeout=300)


def test_openai_client_streams_an_answer_with_sources(client):
    stream = client.chat.completions.create(
        model="slmkit",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=40,
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    text = "".join(pieces)
    assert len(pieces) > 1, "the answer arrived in one piece, not streamed"
    # SmolLM2's wording (and its facts) vary with the KV-cache state left by earlier requests; the topic does not.
    assert "warranty" in text.lower()
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert final.choices[0].finish_reason in ("stop", "length")
    sources = final.model_extra["sources"]
    assert sources, "the answer cites no passage"
    assert {Path(s["source"]).name for s in sources} == {"product-faq.txt"}
    extras = final.model_extra["slmkit"]
    checked = extras.get("text", text)  # the checked text, with its [n] markers
    assert all(f"[{s['marker']}]" in checked for s in sources)
    assert extras["abstained"] is False
    assert extras["route"] == "local"
    assert extras["timings"]["first_token_ms"] > 0
    usage = chunks[-1].usage
    assert chunks[-1].choices == []
    assert usage.prompt_tokens > 50  # instructions, passages and the question
    assert 0 < usage.completion_tokens <= 40


def test_whole_answer_with_usage_and_max_tokens(client):
    completion = client.chat.completions.create(
        model="slmkit", messages=[{"role": "user", "content": QUESTION}], max_tokens=3
    )
    assert completion.choices[0].message.content.strip()
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 3
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 3


def test_a_question_the_documents_do_not_cover_is_not_answered(client):
    completion = client.chat.completions.create(
        model="slmkit", messages=[{"role": "user", "content": "Who won the football world cup in 1954?"}]
    )
    assert completion.model_extra["slmkit"]["abstained"] is True
    assert completion.model_extra["sources"] == []
    assert completion.usage.total_tokens == 0  # no model call at all
    assert "nothing" in completion.choices[0].message.content.lower()


def test_models_and_errors_over_http(client):
    assert [m.id for m in client.models.list().data] == ["slmkit"]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="last message must come from the user"):
        client.chat.completions.create(model="slmkit", messages=[{"role": "assistant", "content": "hi"}])


def test_concurrent_clients_are_all_answered(client):
    answers: list[str] = []
    errors: list[BaseException] = []

    def ask():
        try:
            stream = client.chat.completions.create(
                model="slmkit", messages=[{"role": "user", "content": QUESTION}], stream=True, max_tokens=12
            )
            answers.append("".join(c.choices[0].delta.content or "" for c in stream if c.choices))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert errors == []
    assert len(answers) == 3
    assert all(a.strip() for a in answers)


def test_serve_refuses_a_missing_knowledge_base_and_a_taken_port(home, server):
    missing = slmkit("serve", "--kb", "nothing-here", "--port", "0", env=home, timeout=120)
    assert missing.returncode == 1
    assert "slmkit ingest PATH --kb nothing-here" in missing.stderr
    port = server.rsplit(":", 1)[1].split("/")[0]
    taken = slmkit("serve", "--port", port, env=home, timeout=120)
    assert taken.returncode == 1
    assert f"Cannot listen on 127.0.0.1:{port}" in taken.stderr


def http(url, *, headers=None, body=None):
    """(status, parsed JSON body) of one request, errors included."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def test_only_a_bearer_key_opens_the_server(server):
    root = server.removesuffix("/v1")
    assert http(f"{root}/health") == (200, {"status": "ok"})
    for path in ("/v1/models", "/openapi.json", "/docs"):
        status, body = http(f"{root}{path}")
        assert status == 401, path
        assert body["error"]["code"] == "invalid_api_key"
    assert http(f"{server}/models", headers={"Authorization": KEY})[0] == 401  # the bare key: refused
    assert http(f"{server}/models", headers={"Authorization": f"Basic {KEY}"})[0] == 401
    status, body = http(f"{server}/models", headers={"Authorization": f"Bearer {KEY}"})
    assert (status, [m["id"] for m in body["data"]]) == (200, ["slmkit"])
    assert http(f"{root}/openapi.json", headers={"Authorization": f"Bearer {KEY}"})[0] == 200
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server, api_key="a-guess", max_retries=0).models.list()


def test_a_question_too_long_for_the_model_is_a_400_and_a_huge_body_a_413(client, server):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="slmkit", messages=[{"role": "user", "content": "Is the warranty long? " * 2_500}]
        )
    assert info.value.code == "context_length_exceeded"
    huge = {"model": "slmkit", "messages": [{"role": "user", "content": "x" * 5_000_000}]}
    status, body = http(f"{server}/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, body=huge)
    assert (status, body["error"]["code"]) == (413, "request_too_large")
    assert client.models.list().data  # still serving


def test_serve_on_every_interface_without_a_key_refuses_to_start(home):
    started = time.monotonic()
    refused = slmkit("serve", "--host", "0.0.0.0", "--port", str(free_port()), env=home, timeout=120)
    assert refused.returncode == 2
    assert "--api-key" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert time.monotonic() - started < 60  # refused before any model loads
