"""Models and agents: the local SLM as a LangChain chat model, and the packaged-model catalogue."""

from __future__ import annotations

from typing import TYPE_CHECKING

from slmkit.core.lazy import lazy_exports

if TYPE_CHECKING:
    from slmkit.agent.answer import Answer, AnswerEvent, Citation, TokenEvent
    from slmkit.agent.assistant import Assistant, AssistantConfig, RemoteModelConfig
    from slmkit.agent.catalogue import (
        CATALOGUE,
        DEFAULT_MODEL,
        ModelSpec,
        ModelStatus,
        model_status,
        resolve_model_path,
    )
    from slmkit.agent.chat_local import ChatLocalSLM
    from slmkit.agent.multi_agent import MultiAgentResult, Supervisor, SupervisorConfig, ask_llm_tool

__all__ = [
    "CATALOGUE",
    "DEFAULT_MODEL",
    "Answer",
    "AnswerEvent",
    "Assistant",
    "AssistantConfig",
    "ChatLocalSLM",
    "Citation",
    "ModelSpec",
    "ModelStatus",
    "MultiAgentResult",
    "RemoteModelConfig",
    "Supervisor",
    "SupervisorConfig",
    "TokenEvent",
    "ask_llm_tool",
    "model_status",
    "resolve_model_path",
]

_LAZY = {
    "Answer": "slmkit.agent.answer",
    "AnswerEvent": "slmkit.agent.answer",
    "Citation": "slmkit.agent.answer",
    "TokenEvent": "slmkit.agent.answer",
    "Assistant": "slmkit.agent.assistant",
    "AssistantConfig": "slmkit.agent.assistant",
    "RemoteModelConfig": "slmkit.agent.assistant",
    "ChatLocalSLM": "slmkit.agent.chat_local",
    "CATALOGUE": "slmkit.agent.catalogue",
    "DEFAULT_MODEL": "slmkit.agent.catalogue",
    "ModelSpec": "slmkit.agent.catalogue",
    "ModelStatus": "slmkit.agent.catalogue",
    "model_status": "slmkit.agent.catalogue",
    "resolve_model_path": "slmkit.agent.catalogue",
    "MultiAgentResult": "slmkit.agent.multi_agent",
    "Supervisor": "slmkit.agent.multi_agent",
    "SupervisorConfig": "slmkit.agent.multi_agent",
    "ask_llm_tool": "slmkit.agent.multi_agent",
}


__getattr__ = lazy_exports(__name__, _LAZY)
