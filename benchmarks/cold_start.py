"""Cold and warm time to first token of `slmkit ask`, per catalogue model, against a baseline checkout side by side.

Cold: a fresh `python -m slmkit ask QUESTION --kb NAME --path DIR -q --model M` process, timed from its start to the
first character of the answer on stdout (what a person at the terminal waits for), and to its exit. Warm: in one
process, the second question's ``Answer.timings["first_token_ms"]`` (models loaded, caches filled). The knowledge
base holds the example documents; guards are on, as `slmkit ask` runs by default.

``--baseline SRC`` runs the same cold measurement with another source tree first on ``PYTHONPATH`` (e.g. a git
worktree of the commit before a start-up change), interleaved run by run with the current tree, so a loaded machine
slows both alike; the figure to read is the ratio of medians.

    git worktree add /tmp/slmkit-before <commit> --detach
    .venv/bin/python benchmarks/cold_start.py --baseline /tmp/slmkit-before --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "examples" / "docs"
QUESTIONS = ("How long is the GridBox 3 warranty?", "How many vacation days do employees get per year?")
KB_NAME = "examples"


def cold_run(source: Path, model: str, kb_path: Path, question: str) -> tuple[float, float, float]:
    """Seconds from process start to the first answer character and to its exit, and the CPU seconds it used
    (user + system: less at the mercy of other processes on a shared machine than the wall clock)."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    command = [sys.executable, "-m", "slmkit", "ask", question, "--kb", KB_NAME, "--path", str(kb_path), "-q"]
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        process = subprocess.Popen(
            [*command, "--model", model], stdout=subprocess.PIPE, stderr=errors, env=env, cwd=source
        )
        assert process.stdout is not None
        first = float("nan")
        while char := process.stdout.read(1):
            if not char.isspace():
                first = time.perf_counter() - started
                break
        process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        total = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            errors.seek(0)
            raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}): {errors.read().decode()[-2000:]}")
    return first, total, usage.ru_utime + usage.ru_stime


WARM_SCRIPT = """
import json, sys
from slmkit.agent import Assistant, AssistantConfig
from slmkit.retrieval import KnowledgeBase
kb = KnowledgeBase(name=sys.argv[1], path=sys.argv[2])
assistant = Assistant(kb, config=AssistantConfig(model=sys.argv[3]))
times = [assistant.ask(q).timings["first_token_ms"] / 1000 for q in sys.argv[4:]]
print(json.dumps(times))
"""


def warm_first_token(model: str, kb_path: Path, runs: int) -> list[float]:
    """First-token seconds of questions 2..runs+1 asked in one process (the first one loads everything)."""
    questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(runs + 1)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", WARM_SCRIPT, KB_NAME, str(kb_path), model, *questions],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return list(json.loads(done.stdout.strip().splitlines()[-1]))[1:]


def median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=None, help="catalogue ids (default: every installed one)")
    parser.add_argument("--runs", type=int, default=5, help="cold processes per model and tree")
    parser.add_argument("--baseline", type=Path, default=None, help="another source tree, measured interleaved")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "cold_start.json")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from slmkit.agent.catalogue import CATALOGUE, model_status
    from slmkit.retrieval import KnowledgeBase

    models = args.models or [m for m in CATALOGUE if model_status(m).state == "ready"]
    trees = {"current": ROOT, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        kb_path = Path(tmp)
        KnowledgeBase(name=KB_NAME, path=kb_path).ingest([DOCS], show_progress=False)
        for model in models:
            cold: dict[str, list[tuple[float, float, float]]] = {name: [] for name in trees}
            for run in range(args.runs):
                for name, source in trees.items() if run % 2 == 0 else reversed(trees.items()):
                    cold[name].append(cold_run(source, model, kb_path, QUESTIONS[run % len(QUESTIONS)]))
                    print(f"{model} {name} run {run + 1}: first token {cold[name][-1][0]:.2f} s", file=sys.stderr)
            row: dict[str, object] = {"model": model, "runs": args.runs, "load_average": os.getloadavg()[0]}
            for name, timings in cold.items():
                row[f"{name}_cold_first_token_s"] = median([t[0] for t in timings])
                row[f"{name}_cold_total_s"] = median([t[1] for t in timings])
                row[f"{name}_cold_cpu_s"] = median([t[2] for t in timings])
            if args.baseline:
                before, after = (median([t[0] for t in cold[name]]) for name in ("baseline", "current"))
                row["cold_first_token_ratio"] = round(before / after, 2)
            row["warm_first_token_s"] = median(warm_first_token(model, kb_path, args.runs))
            results.append(row)
            print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    columns = [c for c in results[0] if c != "model"]
    print("\n| model | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns))
    for row in results:
        print(f"| {row['model']} | " + " | ".join(str(row[c]) for c in columns) + " |")


if __name__ == "__main__":
    main()
