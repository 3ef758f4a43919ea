"""Documents added while `slmkit serve` answers: no failed request, no restart, the new files answer questions.

Everything as a user runs it: `slmkit ingest examples/docs`, `slmkit serve` (packaged SmolLM2-135M and MiniLM) on
127.0.0.1, two clients sending chat completions in a loop, and `slmkit ingest` of new files in another process
while they do. `benchmarks/soak_serve.py` is the long version (200 files, 4 clients).
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

import pytest

from slmkit.routing.server import free_port

pytestmark = pytest.mark.model

DOCS = Path(__file__).resolve().parents[2] / "examples" / "docs"
NEW = {
    "cafeteria.md": (
        "# Cafeteria\n\nThe cafeteria on the third floor serves breakfast from 7:30 to 9:30 every weekday. "
        "Lunch is served from noon to 2 pm.\n",
        "When does the cafeteria serve breakfast?",
    ),
    "parking.md": (
        "# Parking\n\nEmployees park in the underground garage on Mill Street. A parking permit costs 40 euros "
        "a month and is requested from the facilities desk.\n",
        "How much does a parking permit cost?",
    ),
    "library.md": (
        "# Library\n\nThe company library lends books for four weeks. Overdue books are reminded by e-mail after "
        "five days.\n",
        "For how long does the company library lend books?",
    ),
    "fire-drill.md": (
        "# Fire drill\n\nA fire drill takes place every March and September. Everyone gathers at the assembly "
        "point in the north car park.\n",
        "Where is the assembly point during a fire drill?",
    ),
}


def slmkit(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "slmkit", *args], capture_output=True, text=True, env=env, timeout=900)


def ask(url: str, question: str) -> tuple[int, list[str]]:
    body = json.dumps({"model": "slmkit", "messages": [{"role": "user", "content": question}], "max_tokens": 24})
    request = urllib.request.Request(f"{url}/v1/chat/completions", body.encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            payload = json.loads(response.read())
            return response.status, [Path(s["source"]).name for s in payload.get("sources", [])]
    except urllib.error.HTTPError as exc:
        return exc.code, []


@pytest.fixture
def served(tmp_path):
    env = {**os.environ, "SLMKIT_HOME": str(tmp_path)}
    env.pop("SLMKIT_API_KEY", None)
    first = slmkit("ingest", str(DOCS), "-q", env=env)
    assert first.returncode == 0, first.stderr
    port = free_port()
    log = (tmp_path / "serve.log").open("w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "slmkit", "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    deadline = time.monotonic() + 300
    while True:
        assert process.poll() is None, (tmp_path / "serve.log").read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                break
        except (urllib.error.URLError, OSError):
            assert time.monotonic() < deadline, "slmkit serve did not answer within 300 s"
            time.sleep(0.3)
    yield f"http://127.0.0.1:{port}", env, tmp_path
    process.send_signal(signal.SIGINT)
    process.wait(30)
    log.seek(0)
    assert "Traceback" not in log.read()
    log.close()


@pytest.mark.timeout(1800)
def test_documents_ingested_while_serving_are_answered_without_a_restart(served):
    url, env, home = served
    new = home / "new-docs"
    new.mkdir()
    for name, (text, _) in NEW.items():
        (new / name).write_text(text)

    statuses: list[int] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            statuses.append(ask(url, "How long is the GridBox 3 warranty?")[0])

    clients = [threading.Thread(target=client) for _ in range(2)]
    for thread in clients:
        thread.start()
    try:
        time.sleep(3)
        ingest = slmkit("ingest", str(new), "-q", env=env)  # a separate process, beside the server
        assert ingest.returncode == 0, ingest.stderr
        assert "4 added" in ingest.stdout
        cited = {name: name in ask(url, question)[1] for name, (_, question) in NEW.items()}
    finally:
        stop.set()
        for thread in clients:
            thread.join(300)
    assert statuses, "no request finished while the documents were ingested"
    assert set(statuses) == {200}
    assert cited == dict.fromkeys(NEW, True)
    doctor = slmkit("doctor", "--check", "-q", env=env)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "consistent" in doctor.stdout
