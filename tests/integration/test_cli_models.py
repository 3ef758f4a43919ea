"""The `slmkit` command as a script sees it: output, exit codes, messages."""

from __future__ import annotations

import json
import subprocess
import sys


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "slmkit", *args], capture_output=True, text=True, timeout=300)


def test_models_list_json_shows_installed_models():
    out = run("models", "list", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["id"]: r for r in json.loads(out.stdout)}
    assert rows["smollm2-135m-instruct"]["state"] in ("ready", "installed")
    assert rows["qwen2.5-coder-0.5b-instruct"]["missing_packages"] == []


def test_models_list_table_marks_the_default():
    out = run("models", "list")
    assert out.returncode == 0
    assert "smollm2-135m-instruct*" in out.stdout


def test_models_pull_verifies_and_prints_the_path():
    out = run("models", "pull", "smollm2-135m-instruct")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith(".gguf")


def test_models_pull_without_ids_is_a_usage_error():
    out = run("models", "pull")
    assert out.returncode == 2
    assert "--all" in out.stderr


def test_ask_without_documents_streams_an_answer():
    out = run("ask", "--no-kb", "What is the capital of Italy? One word.", "--quiet", "--temperature", "0")
    assert out.returncode == 0, out.stderr
    assert "rome" in out.stdout.lower()


def test_unknown_model_exits_1_with_the_fix():
    out = run("ask", "--no-kb", "hi", "--model", "gpt-17")
    assert out.returncode == 1
    assert "Unknown model id 'gpt-17'" in out.stderr
    assert "smollm2-135m-instruct" in out.stderr
