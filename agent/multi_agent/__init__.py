"""Multi-agent orchestration: a supervisor plans with the local SLM and delegates steps to agents.

Read ``supervisor.py`` first (one request, end to end), then ``plan.py``, ``agents.py`` and ``tools.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slmkit.core.lazy import lazy_exports

if TYPE_CHECKING:
    from slmkit.agent.multi_agent.agents import LLMAgent, QAAgent, StepResult, ToolAgent, ToolRun
    from slmkit.agent.multi_agent.plan import Plan, Planner, Step
    from slmkit.agent.multi_agent.supervisor import (
        DelegatedStep,
        MultiAgentResult,
        Supervisor,
        SupervisorConfig,
        pinned,
    )
    from slmkit.agent.multi_agent.tools import ask_llm_tool

__all__ = [
    "DelegatedStep",
    "LLMAgent",
    "MultiAgentResult",
    "Plan",
    "Planner",
    "QAAgent",
    "Step",
    "StepResult",
    "Supervisor",
    "SupervisorConfig",
    "ToolAgent",
    "ToolRun",
    "ask_llm_tool",
    "pinned",
]

_LAZY = {
    "LLMAgent": "slmkit.agent.multi_agent.agents",
    "QAAgent": "slmkit.agent.multi_agent.agents",
    "StepResult": "slmkit.agent.multi_agent.agents",
    "ToolAgent": "slmkit.agent.multi_agent.agents",
    "ToolRun": "slmkit.agent.multi_agent.agents",
    "Plan": "slmkit.agent.multi_agent.plan",
    "Planner": "slmkit.agent.multi_agent.plan",
    "Step": "slmkit.agent.multi_agent.plan",
    "DelegatedStep": "slmkit.agent.multi_agent.supervisor",
    "MultiAgentResult": "slmkit.agent.multi_agent.supervisor",
    "Supervisor": "slmkit.agent.multi_agent.supervisor",
    "SupervisorConfig": "slmkit.agent.multi_agent.supervisor",
    "pinned": "slmkit.agent.multi_agent.supervisor",
    "ask_llm_tool": "slmkit.agent.multi_agent.tools",
}


__getattr__ = lazy_exports(__name__, _LAZY)
