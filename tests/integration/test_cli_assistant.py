"""``slmkit ingest``, ``ask`` and ``chat`` as a user runs them: real processes, the packaged models, a fresh
``$SLMKIT_HOME``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.model, pytest.mark.timeout(900)]
ROOT = Path(__file__).resolve().parents[2]


def slmkit(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SLMKIT_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "slmkit", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("home")
    first = slmkit(home, "ingest", "examples/docs")
    assert first.returncode == 0, first.stderr
    assert "3 added" in first.stdout
    return home


def test_ingest_again_only_checks(home):
    again = slmkit(home, "ingest", "examples/docs")
    assert again.returncode == 0
    assert "0 added, 0 updated, 3 unchanged" in again.stdout


def test_ask_streams_the_answer_then_sources_and_route(home):
    out = slmkit(home, "ask", "How quickly must a lost laptop be reported?")
    assert out.returncode == 0, out.stderr
    answer, _, sources = out.stdout.partition("Sources:")
    assert "2 hours" in answer
    assert "[1] examples/docs/security-policy.pdf, p. 1" in sources
    assert "route local:" in out.stderr
    assert "first token" in out.stderr


def test_ask_a_statement_in_a_fresh_process_checks_it_against_the_documents(home):
    # a fresh process: the statement tagger and the PII guard's thread both load spaCy (a race once crashed this)
    out = slmkit(home, "ask", "Lost laptops must be reported within 2 hours.")
    assert out.returncode == 0, out.stderr
    assert "Sources:" in out.stdout
    assert "security-policy.pdf" in out.stdout.partition("Sources:")[2]


def test_ask_json_is_the_whole_answer(home):
    import json

    out = slmkit(home, "ask", "--json", "-q", "How long is the GridBox 3 warranty?")
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["citations"][0]["source"].endswith("product-faq.txt")
    assert answer["routing"]["route"] == "local"


def test_ask_outside_the_documents_says_so(home):
    out = slmkit(home, "ask", "What is the capital of France?")
    assert out.returncode == 0
    assert "found nothing about this in the documents" in out.stdout
    assert "Sources:" not in out.stdout


def test_ask_without_a_knowledge_base_exits_1_with_advice(tmp_path):
    out = slmkit(tmp_path, "ask", "How long is the warranty?")
    assert out.returncode == 1
    assert "slmkit ingest" in out.stderr


def test_chat_answers_each_line_and_ends_cleanly_at_eof(home):
    out = slmkit(home, "chat", "-q", stdin="How long is the GridBox 3 warranty?\n/reset\n")
    assert out.returncode == 0, out.stderr
    assert "product-faq.txt" in out.stdout
    assert "(conversation forgotten)" in out.stdout


def test_ask_with_a_cascade_escalates_to_a_real_server_and_says_so(home):
    from slmkit.agent import resolve_model_path
    from slmkit.routing import LlamaServer

    with LlamaServer(resolve_model_path("smollm2-135m-instruct"), n_ctx=2048, n_threads=2) as server:
        # 1.0: every answer the local model gives counts as unsure and goes to the server
        args = ("--remote-url", server.base_url, "--remote-model", server.alias, "--escalate-below", "1")
        out = slmkit(home, "ask", *args, "How long is the GridBox 3 warranty?")
    assert out.returncode == 0, out.stderr
    assert "route remote: escalated: the local answer's answer_score" in out.stderr
    assert "product-faq.txt" in out.stdout


def test_escalate_below_without_a_remote_or_out_of_range_is_a_usage_error(home):
    alone = slmkit(home, "ask", "--escalate-below", "auto", "How long is the GridBox 3 warranty?")
    assert alone.returncode == 1
    assert "give --remote-url as well" in alone.stderr
    wrong = slmkit(home, "ask", "--remote-url", "http://127.0.0.1:9/v1", "--escalate-below", "often", "Hi?")
    assert wrong.returncode == 1
    assert "'auto' or a number from 0 to 1, not 'often'" in wrong.stderr
