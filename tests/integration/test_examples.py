"""Every script in examples/ runs offline, as a user would run it, and prints what its docstring promises.

Each script is a subprocess with a timeout and a scratch ``$SLMKIT_HOME``; scripts not listed in ``EXPECTED``
(new ones) must still exit 0 and print something.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.model

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py"))

EXPECTED: dict[str, list[str]] = {
    "local_qa.py": ["product-faq.txt", "answered by the local route"],
    "langchain_chain.py": ["> How many paid vacation days", "route: ", "grounding: "],
    "langchain_agent.py": ["calls search_docs(", "[tool] ", "grounding: "],
    "routing_policy.py": ["[slm]", "[llm]", "4 requests: "],
    "multi_agent.py": ["plan: ", " agent, ", "The LLM was called", "routing: "],
}


def test_the_examples_folder_has_the_scripts_the_readme_names():
    assert set(EXPECTED) <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs(script, tmp_path):
    env = {**os.environ, "SLMKIT_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script)], capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    assert done.stdout.strip(), f"{script} printed nothing"
    for needle in EXPECTED.get(script, []):
        assert needle in done.stdout, f"{script}: {needle!r} not in its output:\n{done.stdout[-3000:]}"
    assert "Traceback" not in done.stderr
