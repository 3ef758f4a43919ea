"""slmkit: small language models for real work.

A local SLM (llama.cpp, GGUF) as a LangChain chat model, packaged offline models, and (in the parts reached as
``slmkit.retrieval``, ``slmkit.guards``, ``slmkit.routing``, ``slmkit.agent``) retrieval, guards and routing.
Everything is imported lazily, so ``import slmkit`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slmkit.core.lazy import lazy_exports

__version__ = "0.1.0"

if TYPE_CHECKING:
    from slmkit.agent import ChatLocalSLM
    from slmkit.core.errors import ContextOverflowError, SlmkitError

__all__ = ["ChatLocalSLM", "ContextOverflowError", "SlmkitError", "__version__"]

_LAZY = {
    "ChatLocalSLM": "slmkit.agent",
    "ContextOverflowError": "slmkit.core.errors",
    "SlmkitError": "slmkit.core.errors",
}


__getattr__ = lazy_exports(__name__, _LAZY)
