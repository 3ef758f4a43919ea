"""Local document Q&A in ten lines: ingest examples/docs into a knowledge base, ask, print the cited sources.

python examples/local_qa.py
"""

import tempfile
from pathlib import Path

from slmkit.agent import Assistant

with tempfile.TemporaryDirectory() as kb_path:
    assistant = Assistant.from_defaults(kb_name="examples", kb_path=kb_path)  # SmolLM2-135M, offline
    assistant.knowledge_base.ingest(Path(__file__).parent / "docs", show_progress=False)
    answer = assistant.ask("How long is the GridBox 3 warranty?")
    print(answer.text)
    for c in answer.citations:
        print(f"  [{c.marker}] {Path(c.source).name}" + (f", page {c.page}" if c.page else ""))
    print(f"answered by the {answer.routing.route} route in {answer.timings['total_ms'] / 1000:.1f} s")
