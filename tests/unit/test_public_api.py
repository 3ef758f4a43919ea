"""The public surface and the import rules that keep `import slmkit` fast and the layers honest."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import slmkit
import slmkit.agent
import slmkit.core

ROOT = Path(__file__).resolve().parents[2]


def test_top_level_all_is_frozen():
    assert sorted(slmkit.__all__) == ["ChatLocalSLM", "ContextOverflowError", "SlmkitError", "__version__"]


def test_agent_all_is_frozen():
    assert sorted(slmkit.agent.__all__) == sorted(
        [
            "CATALOGUE",
            "Answer",
            "AnswerEvent",
            "Assistant",
            "AssistantConfig",
            "Citation",
            "RemoteModelConfig",
            "TokenEvent",
            "DEFAULT_MODEL",
            "ChatLocalSLM",
            "ModelSpec",
            "ModelStatus",
            "MultiAgentResult",
            "Supervisor",
            "SupervisorConfig",
            "ask_llm_tool",
            "model_status",
            "resolve_model_path",
        ]
    )
    for name in slmkit.agent.__all__:
        assert getattr(slmkit.agent, name) is not None


def test_every_core_export_resolves():
    for name in slmkit.core.__all__:
        assert getattr(slmkit.core, name) is not None


def test_import_slmkit_loads_no_heavy_library():
    code = (
        "import sys, slmkit, slmkit.agent; "
        "heavy = [m for m in ('llama_cpp', 'torch', 'chromadb', 'spacy', 'langchain_core') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


# slmkit.core <- retrieval, guards <- routing <- agent <- slmkit.cli
FORBIDDEN = {
    "slmkit/core": ("slmkit.agent", "slmkit.retrieval", "slmkit.routing", "slmkit.guards", "slmkit.cli"),
    "retrieval": ("slmkit.agent", "slmkit.routing", "slmkit.guards", "slmkit.cli"),
    "guards": ("slmkit.agent", "slmkit.routing", "slmkit.retrieval", "slmkit.cli"),
    "routing": ("slmkit.agent", "slmkit.cli"),
    "agent": ("slmkit.cli",),
}


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_imports_point_one_way(folder):
    offenders = []
    for path in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.startswith(FORBIDDEN[folder])]
    assert offenders == []


def test_parts_are_symlinked_into_the_package():
    for part in ("agent", "retrieval", "routing", "guards"):
        link = ROOT / "slmkit" / part
        assert link.is_symlink()
        assert link.resolve() == (ROOT / part).resolve()
