"""Models and agents: the local SLM as a LangChain chat model, and the packaged-model catalogue."""

from __future__ import annotations

from typing import TYPE_CHECKING

from slmkit.core.lazy import lazy_exports

if TYPE_CHECKING:
    from slmkit.agent.catalogue import (
        CATALOGUE,
        DEFAULT_MODEL,
        ModelSpec,
        ModelStatus,
        model_status,
        resolve_model_path,
    )
    from slmkit.agent.chat_local import ChatLocalSLM

__all__ = [
    "CATALOGUE",
    "DEFAULT_MODEL",
    "ChatLocalSLM",
    "ModelSpec",
    "ModelStatus",
    "model_status",
    "resolve_model_path",
]

_LAZY = {
    "ChatLocalSLM": "slmkit.agent.chat_local",
    "CATALOGUE": "slmkit.agent.catalogue",
    "DEFAULT_MODEL": "slmkit.agent.catalogue",
    "ModelSpec": "slmkit.agent.catalogue",
    "ModelStatus": "slmkit.agent.catalogue",
    "model_status": "slmkit.agent.catalogue",
    "resolve_model_path": "slmkit.agent.catalogue",
}


__getattr__ = lazy_exports(__name__, _LAZY)
