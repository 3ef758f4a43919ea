"""``slmkit serve`` under concurrent clients vs the same calls in-process, in one run.

The same questions about examples/docs, with the same settings (SmolLM2-135M, greedy, ``max_tokens`` small), go
four ways:

    in-process        ``Assistant.ask``, one call after another: the baseline (one model, so one call at a time)
    HTTP, 1 client    ``POST /v1/chat/completions`` to a ``python -m slmkit serve`` subprocess, one at a time:
                      what HTTP, JSON and the worker thread add to each call
    HTTP, C clients   C threads with the official ``openai`` client sending requests at once (default 4)
    HTTP, C streams   the same, streamed (``stream=True``), with the time to the first token

The modes take turns in blocks of C requests (the order rotates every round), so load from other work on the
machine hits all of them alike; no two modes run at once. Reported per mode: requests/s (requests / summed block
time), p50 and p90 latency per request, and the requests/s ratio to in-process. The server runs one model call at a
time, so under C clients a request's latency includes waiting for the ones ahead of it: requests/s is the figure to
compare.

    python benchmarks/serve_throughput.py [--clients 4] [--rounds 6] [--max-tokens 16] [--model ID]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import openai

from slmkit.agent import Assistant, AssistantConfig
from slmkit.agent.serve import warm_up
from slmkit.retrieval import KnowledgeBase
from slmkit.routing.server import free_port

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "examples" / "docs"
OUT = ROOT / "benchmarks" / "out" / "serve_throughput.json"
QUESTIONS = [
    "How many paid vacation days do employees get per year?",
    "How long is the GridBox 3 warranty?",
    "What does error code E17 mean?",
    "How much energy does the GridBox 3 store?",
    "How many days per week may I work remotely?",
    "Up to how much are meals on business trips reimbursed?",
    "How do I update the GridBox firmware?",
    "Who installs the GridBox 3?",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(latencies: list[float], wall: float) -> dict[str, float]:
    return {
        "requests": len(latencies),
        "requests_per_s": len(latencies) / wall,
        "p50_ms": statistics.median(latencies) * 1000,
        "p90_ms": percentile(latencies, 0.9) * 1000,
        "wall_s": wall,
    }


class Mode:
    """One way of sending requests; ``block`` sends a list of questions and returns the wall time it took."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.latencies: list[float] = []
        self.first_tokens: list[float] = []
        self.wall = 0.0

    def block(self, questions: list[str]) -> None:
        start = time.perf_counter()
        self.send(questions)
        self.wall += time.perf_counter() - start

    def send(self, questions: list[str]) -> None:
        raise NotImplementedError

    def result(self) -> dict[str, float]:
        out = summary(self.latencies, self.wall)
        if self.first_tokens:
            out["first_token_p50_ms"] = statistics.median(self.first_tokens) * 1000
        return out


class InProcess(Mode):
    def __init__(self, assistant: Assistant) -> None:
        super().__init__("in_process")
        self.assistant = assistant

    def send(self, questions: list[str]) -> None:
        for question in questions:
            t = time.perf_counter()
            self.assistant.ask(question)
            self.latencies.append(time.perf_counter() - t)


class OverHTTP(Mode):
    """``clients`` threads, each sending its share of the block one request after another."""

    def __init__(self, url: str, clients: int, stream: bool = False) -> None:
        super().__init__(f"http_{clients}_client{'s' if clients > 1 else ''}{'_stream' if stream else ''}")
        self.client = openai.OpenAI(base_url=url, api_key="-", max_retries=0, timeout=600)
        self.clients = clients
        self.stream = stream
        self.lock = threading.Lock()

    def ask(self, question: str) -> None:
        t = time.perf_counter()
        messages: Any = [{"role": "user", "content": question}]
        if self.stream:
            first = None
            for chunk in self.client.chat.completions.create(model="slmkit", messages=messages, stream=True):
                if first is None and chunk.choices and chunk.choices[0].delta.content:
                    first = time.perf_counter() - t
            with self.lock:
                self.first_tokens.append(first or 0.0)
        else:
            self.client.chat.completions.create(model="slmkit", messages=messages)
        with self.lock:
            self.latencies.append(time.perf_counter() - t)

    def send(self, questions: list[str]) -> None:
        def work(share: list[str]) -> None:
            for question in share:
                self.ask(question)

        threads = [threading.Thread(target=work, args=(questions[i :: self.clients],)) for i in range(self.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def start_server(home: Path, args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [sys.executable, "-m", "slmkit", "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--max-tokens", str(args.max_tokens), "--model", args.model]
    env = {**os.environ, "SLMKIT_HOME": str(home)}
    process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"slmkit serve exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2):
                return process, url
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    process.kill()
    raise SystemExit("slmkit serve did not come up within 300 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=6, help="requests per client")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    args = parser.parse_args()
    n = args.clients * args.rounds
    questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(n)]

    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "SLMKIT_HOME": home}
        command = [sys.executable, "-m", "slmkit", "ingest", str(DOCS), "-q"]
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
        process, url = start_server(Path(home), args)
        try:
            kb = KnowledgeBase(path=Path(home) / "kb")  # the default knowledge base of SLMKIT_HOME=home (read only)
            config = AssistantConfig(model=args.model, max_tokens=args.max_tokens)
            assistant = Assistant(knowledge_base=kb, config=config)
            warm_up(assistant)
            modes: list[Mode] = [
                InProcess(assistant),
                OverHTTP(url, 1),
                OverHTTP(url, args.clients),
                OverHTTP(url, args.clients, stream=True),
            ]
            for mode in modes:  # one untimed request each: connections and caches as in steady state
                mode.send(questions[:1])
                mode.latencies.clear()
                mode.first_tokens.clear()
            for r in range(args.rounds):
                block = questions[r * args.clients : (r + 1) * args.clients]
                for mode in modes[r % len(modes) :] + modes[: r % len(modes)]:
                    mode.block(block)
        finally:
            process.terminate()
            process.wait(30)
    results = {mode.name: mode.result() for mode in modes}

    base = results["in_process"]
    print(f"{n} requests per mode, max_tokens={args.max_tokens}, model {args.model}, {os.cpu_count()} CPUs")
    print(f"{'mode':<26} {'req/s':>7} {'p50 ms':>8} {'p90 ms':>8} {'req/s vs in-process':>20}")
    for name, r in results.items():
        ratio = r["requests_per_s"] / base["requests_per_s"]
        print(f"{name:<26} {r['requests_per_s']:>7.2f} {r['p50_ms']:>8.0f} {r['p90_ms']:>8.0f} {ratio:>20.2f}")
        if "first_token_p50_ms" in r:
            print(f"{'':<26} first token p50 {r['first_token_p50_ms']:.0f} ms")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    record = {"args": vars(args), "machine": platform.platform(), "load_avg": os.getloadavg(), "results": results}
    OUT.write_text(json.dumps(record, indent=2))
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
