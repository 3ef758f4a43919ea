"""Soak: `slmkit serve` answers N concurrent clients while `slmkit ingest` adds files to its knowledge base.

Everything is real and runs as a user would run it: a temporary $SLMKIT_HOME, `slmkit ingest examples/docs`, then
`slmkit serve` on 127.0.0.1 (packaged SmolLM2-135M and MiniLM), N client threads sending chat completions in a
loop, and, once they run, `slmkit ingest` of F new files (one made-up project each: its lead and its budget) in a
separate process. Reported: failed requests (any status but 200, or a transport error), latency p50/p95 before,
during and after the ingestion, how long after the ingestion finished each new file first appears in an answer's
sources (every new file is asked about once, in a random order, by the clients after the ingestion), and whether
`slmkit doctor --check` finds manifest, Chroma and BM25 in agreement at the end. No restart anywhere.

    .venv/bin/python benchmarks/soak_serve.py --files 200 --clients 4
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SYLLABLES = ["ta", "vo", "lin", "bru", "se", "kar", "mo", "dri", "zen", "pa", "lo", "qui", "rem", "ost", "ful", "ang"]
FIRST = ["Maria", "Kwame", "Ines", "Tomas", "Aiko", "Ravi", "Lena", "Omar", "Sofia", "Pavel", "Noor", "Diego"]
LAST = ["Oduya", "Lindqvist", "Moreau", "Tanaka", "Brennan", "Castillo", "Haddad", "Novak", "Okafor", "Sato"]
OLD_QUESTIONS = [
    "How long is the GridBox 3 warranty?",
    "What should I do if I lose my laptop?",
    "How many vacation days do employees get?",
]


def project(i: int, rng: random.Random) -> tuple[str, str, str]:
    """A made-up project name (unique), its lead and a file text stating them."""
    name = "".join(rng.choice(SYLLABLES) for _ in range(3)).capitalize() + f"{i}"
    lead = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    text = (
        f"# Project {name}\n\nProject {name} is led by {lead}. The project {name} has a yearly budget of "
        f"{rng.randint(10, 900)} thousand euros and reports to the facilities board every quarter.\n"
    )
    return name, lead, text


def slmkit(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "slmkit", *args], capture_output=True, text=True, env=env)


def ask(url: str, question: str, timeout: float) -> tuple[int, float, list[str]]:
    body = json.dumps(
        {"model": "slmkit", "messages": [{"role": "user", "content": question}], "max_tokens": 24}
    ).encode()
    request = urllib.request.Request(f"{url}/v1/chat/completions", body, {"Content-Type": "application/json"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.loads(response.read())
            status = response.status
    except urllib.error.HTTPError as exc:
        return exc.code, time.perf_counter() - started, []
    except (urllib.error.URLError, OSError, TimeoutError):
        return -1, time.perf_counter() - started, []
    sources = [Path(s["source"]).name for s in payload.get("sources", [])]
    return status, time.perf_counter() - started, sources


def start_server(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "slmkit", "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"slmkit serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return process
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    process.kill()
    raise SystemExit("slmkit serve did not become ready within 600 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--before", type=float, default=20.0, help="seconds of load before the ingestion starts")
    parser.add_argument("--timeout", type=float, default=300.0, help="client timeout per request (s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from slmkit.routing.server import free_port

    rng = random.Random(args.seed)
    home = Path(tempfile.mkdtemp(prefix="slmkit-soak-"))
    env = {**os.environ, "SLMKIT_HOME": str(home)}
    env.pop("SLMKIT_API_KEY", None)
    first = slmkit("ingest", str(ROOT / "examples" / "docs"), "-q", env=env)
    if first.returncode:
        raise SystemExit(first.stderr)
    new = home / "new-docs"
    new.mkdir()
    projects = {}
    for i in range(args.files):
        name, lead, text = project(i, rng)
        (new / f"project-{i:03d}.md").write_text(text)
        projects[f"project-{i:03d}.md"] = (name, lead)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(env, port, home / "serve.log")
    print(f"serving on {url}; {args.clients} clients; {args.files} new files", flush=True)

    phase = {"name": "before"}
    records: list[tuple[str, int, float]] = []  # phase, status, seconds
    first_ask: dict[str, tuple[float, bool]] = {}  # file -> (seconds after the ingestion finished, found)
    seen_at: dict[str, float] = {}
    todo = list(projects)
    rng.shuffle(todo)
    todo_lock = threading.Lock()
    ingest_done = threading.Event()
    ingest_end = {"t": 0.0}
    stop = threading.Event()

    def client(index: int) -> None:
        local = random.Random(index)
        while not stop.is_set():
            file = None
            if ingest_done.is_set():
                with todo_lock:
                    file = todo.pop() if todo else None
                if file is None:
                    return
                question = f"Who leads Project {projects[file][0]}?"
            else:
                question = local.choice(OLD_QUESTIONS)
            status, seconds, sources = ask(url, question, args.timeout)
            records.append((phase["name"], status, seconds))
            if file is not None:
                first_ask.setdefault(file, (time.monotonic() - ingest_end["t"] - seconds, file in sources))
                if file in sources:
                    seen_at[file] = time.monotonic() - ingest_end["t"]
                elif time.monotonic() - ingest_end["t"] < 60:  # asked again later: becoming searchable may lag
                    with todo_lock:
                        todo.insert(0, file)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.clients)]
    for thread in threads:
        thread.start()
    time.sleep(args.before)
    phase["name"] = "during"
    started = time.monotonic()
    ingest = slmkit("ingest", str(new), "-q", env=env)
    ingest_end["t"] = time.monotonic()
    phase["name"] = "after"
    ingest_done.set()
    print(f"ingest: exit {ingest.returncode} in {ingest_end['t'] - started:.1f} s: {ingest.stdout.strip()}", flush=True)
    for thread in threads:
        thread.join(args.timeout + 120)
    stop.set()
    doctor = slmkit("doctor", "--check", "-q", env=env)
    from slmkit.retrieval import KnowledgeBase  # one more process reading the same knowledge base

    reader = KnowledgeBase(path=home / "kb").as_retriever(k=4)
    retrievable = {
        file
        for file, (name, _) in projects.items()
        if file in {Path(d.metadata["source"]).name for d in reader.invoke(f"Who leads Project {name}?")}
    }
    server.send_signal(signal.SIGINT)
    server.wait(60)

    print("\n| phase | requests | failed | p50 s | p95 s |\n|---|---|---|---|---|")
    for name in ("before", "during", "after"):
        rows = [(s, t) for p, s, t in records if p == name]
        if rows:
            times = np.array([t for _, t in rows])
            failed = sum(s != 200 for s, _ in rows)
            p50, p95 = np.percentile(times, [50, 95])
            print(f"| {name} | {len(rows)} | {failed} | {p50:.2f} | {p95:.2f} |")
    failed_total = sum(s != 200 for _, s, _ in records)
    answered = len(seen_at)
    delays = np.array(sorted(seen_at.values())) if seen_at else np.array([np.nan])
    print(
        f"\nnew files in an answer's sources: {answered}/{args.files}; seconds after the ingestion finished: "
        f"first {delays[0]:.1f}, median {np.median(delays):.1f}, last {delays[-1]:.1f}"
    )
    early = [found for asked, found in first_ask.values() if asked <= 10]
    print(
        f"found at the first question: {sum(f for _, f in first_ask.values())}/{len(first_ask)}; of the questions "
        f"sent within 10 s of the ingestion's end: {sum(early)}/{len(early)}"
    )
    missed = set(projects) - set(seen_at)
    print(
        f"retrieved (top 4) by a separate reader process at the end: {len(retrievable)}/{len(projects)}; of the "
        f"{len(missed)} files no answer cited: {len(missed & retrievable)} retrievable (the answer declined or cited "
        "another passage)"
    )
    print(f"doctor --check: exit {doctor.returncode}: {doctor.stdout.strip()}")
    log = (home / "serve.log").read_text()
    print(f"server log tracebacks: {log.count('Traceback')}")
    print(f"failed requests {failed_total} of {len(records)}")


if __name__ == "__main__":
    main()
