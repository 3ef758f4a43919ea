"""One big text file through ``KnowledgeBase.ingest``: peak memory by phase, chunks/s, the longest commit-lock hold,
resuming after a kill.

A text file of ``--mb`` MB is generated once from SciFact sentences (shuffled, seeded, so chunks do not repeat),
then ingested into a fresh knowledge base by a child process, so that its peak RSS (``ru_maxrss``, the kernel's
high-water mark of the process) is the ingestion's own; the RSS after the embedder was loaded and warmed up is
reported beside it, as the baseline ingestion adds to, and the highest RSS sampled in each phase (see ``Phases``):
streaming must not grow with the file, the switch-over and the BM25 rebuild grow with the knowledge base (Chroma's
index, BM25's). Also reported: chunks/s over the whole call (reading, splitting, embedding, Chroma, manifest, BM25),
and the longest time the commit lock was held (searches in other processes wait that long at most).

``--interrupt-after S`` kills the first child with SIGKILL after S seconds and runs a second one on the same
knowledge base: it reports how many chunks the killed run had embedded and staged (``resumed``) and how many it
still had to embed. To compare with an older slmkit, run the script with ``PYTHONPATH`` pointing at a checkout of it
(``git archive COMMIT | tar -x -C /tmp/old``): the child imports whichever slmkit comes first.

    nice -n 10 .venv/bin/python benchmarks/ingest_big_file.py --mb 15                  # ONNX MiniLM, the default
    nice -n 10 .venv/bin/python benchmarks/ingest_big_file.py --mb 5 --interrupt-after 150 --label resume
    nice -n 10 .venv/bin/python benchmarks/ingest_big_file.py --mb 50 --embedder fake --label new
    PYTHONPATH=/tmp/old nice -n 10 .venv/bin/python benchmarks/ingest_big_file.py --mb 50 --embedder fake --label old
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def generate(path: Path, mb: float, seed: int = 0) -> Path:
    """Paragraphs of 3-8 SciFact sentences, shuffled per pass over the corpus, until ``mb`` MB (written once)."""
    target = int(mb * 1_000_000)
    if path.is_file() and path.stat().st_size >= target:
        return path
    from retrieval_data import corpus

    sentences = [s.strip() for doc in corpus() for s in doc["text"].split(". ") if len(s.strip()) > 20]
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(".partial")
    written = 0
    with scratch.open("w", encoding="utf-8") as fh:
        while written < target:
            rng.shuffle(sentences)
            at = 0
            while at < len(sentences) and written < target:
                n = rng.randint(3, 8)
                paragraph = ". ".join(sentences[at : at + n]) + ".\n\n"
                at += n
                fh.write(paragraph)
                written += len(paragraph.encode("utf-8"))
    scratch.replace(path)
    return path


def make_embedding(name: str) -> Any:
    """The embedder named on the command line, warmed up; named explicitly, since the default may change."""
    if name == "fake":
        from langchain_core.embeddings import DeterministicFakeEmbedding

        return DeterministicFakeEmbedding(size=384)
    if name == "onnx":  # all-MiniLM-L6-v2 INT8 on ONNX Runtime: the default for new knowledge bases
        from slmkit.core.onnx_embeddings import MINILM, OnnxEmbeddings

        embedding: Any = OnnxEmbeddings(model=MINILM)
    else:  # the packaged all-MiniLM-L6-v2 on PyTorch
        from slmkit.core.embeddings import SentenceTransformerEmbeddings

        embedding = SentenceTransformerEmbeddings()
    embedding.embed_documents(["warm up the model"])
    return embedding


class Phases:
    """The highest RSS sampled every 0.2 s in each phase of an ingestion: ``streaming`` (planning, reading,
    splitting, embedding, staging), ``switch-over`` (a file's staged chunks into Chroma and the manifest, under the
    commit lock), ``finishing`` (what follows the switch-over of the one file), ``bm25`` (the index rebuilt once the
    ingestion committed). An older slmkit has no switch-over: all but ``bm25`` is ``streaming`` there."""

    def __init__(self) -> None:
        self.current = "streaming"
        self.highest: dict[str, float] = {}
        self._done = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self._done.wait(0.2):
            self.highest[self.current] = max(self.highest.get(self.current, 0.0), rss_mb())

    def during(self, name: str, function: Any) -> Any:
        """``function``, counted in phase ``name`` while it runs."""

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            before, self.current = self.current, name
            try:
                return function(*args, **kwargs)
            finally:
                self.current = before

        return wrapper

    def watch_switch_over(self, ingestion: Any) -> None:
        """Count the switch-over of the one file (not the empty calls after every piece) as its own phase."""
        real = ingestion.switch

        def switch(run: Any, finished: list[Any], progress: Any) -> None:
            if finished:
                self.current = "switch-over"
            try:
                real(run, finished, progress)
            finally:
                if finished:
                    self.current = "finishing"

        ingestion.switch = switch

    def stop(self) -> dict[str, int]:
        self._done.set()
        return {name: round(mb) for name, mb in self.highest.items()}


def timed_commits(kb: Any) -> list[float]:
    """Record how long each hold of ``kb``'s commit lock lasts (searches in other processes wait that long)."""
    holds: list[float] = []
    original = kb._committing

    @contextlib.contextmanager
    def timed():  # type: ignore[no-untyped-def]
        with original():
            started = time.perf_counter()
            try:
                yield
            finally:
                holds.append(time.perf_counter() - started)

    kb._committing = timed
    return holds


def child(args: argparse.Namespace) -> None:
    """One ingestion, measured; prints one JSON line."""
    import slmkit.retrieval.ingest as ingest_module
    from slmkit.retrieval import KnowledgeBase

    embedding = make_embedding(args.embedder)
    kb = KnowledgeBase(name="bigfile", path=args.kb, embedding=embedding)
    kb._token_counter()[0]("warm up the tokenizer")
    baseline = rss_mb()
    holds = timed_commits(kb)
    phases = Phases()
    if hasattr(getattr(ingest_module, "_Ingestion", None), "switch"):
        phases.watch_switch_over(ingest_module._Ingestion)
    kb._bm25_index = phases.during("bm25", kb._bm25_index)  # type: ignore[method-assign]
    load = os.getloadavg()[0]
    started = time.perf_counter()
    report = kb.ingest([args.file], show_progress=args.progress)
    seconds = time.perf_counter() - started
    peaks = phases.stop()
    chunks = kb.chunk_count()
    print(
        json.dumps(
            {
                "label": args.label,
                "embedder": args.embedder,
                "mb": round(args.file.stat().st_size / 1e6, 1),
                "chunks": chunks,
                "embedded": report.chunks_embedded,
                "resumed": getattr(report, "chunks_resumed", 0),
                "seconds": round(seconds, 1),
                "chunks_per_s": round(chunks / seconds, 2) if seconds else None,
                "peak_rss_mb": round(peak_mb()),
                "baseline_rss_mb": round(baseline),
                "sampled_max_rss_mb_by_phase": peaks,
                "longest_commit_hold_s": round(max(holds, default=0.0), 2),
                "commits": len(holds),
                "load_avg_start": round(load, 1),
                "load_avg_end": round(os.getloadavg()[0], 1),
            }
        ),
        flush=True,
    )


def run_child(args: argparse.Namespace, kill_after: float | None = None) -> dict | None:
    command = [sys.executable, __file__, "--child", "--file", str(args.file), "--kb", str(args.kb)]
    command += ["--embedder", args.embedder, "--label", args.label] + ([] if args.progress else ["--no-progress"])
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)  # the progress bar goes to stderr
    if kill_after is not None:
        try:
            process.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            print(f"killed the first run after {kill_after:.0f} s", file=sys.stderr)
            return None
    out, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"the ingestion failed (exit {process.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=50.0, help="size of the generated text file (default 50)")
    parser.add_argument(
        "--embedder",
        choices=["onnx", "minilm", "fake"],
        default="onnx",
        help="all-MiniLM-L6-v2 on ONNX Runtime (the default of new knowledge bases) or PyTorch, or a fake one",
    )
    parser.add_argument("--label", default="current")
    parser.add_argument("--work", type=Path, default=HERE / "out" / "bigfile")
    parser.add_argument("--interrupt-after", type=float, default=None, metavar="S")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--kb", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    args.file = generate(args.work / f"big-{args.mb:g}mb.txt", args.mb)
    args.kb = args.work / f"kb-{args.label}-{args.embedder}-{args.mb:g}mb"
    shutil.rmtree(args.kb, ignore_errors=True)
    results = []
    if args.interrupt_after is not None:
        first = run_child(args, kill_after=args.interrupt_after)
        if first is not None:
            print("the first run finished before it could be interrupted", file=sys.stderr)
            results.append(first)
    results.append(run_child(args))
    for result in results:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
