"""Lazy package exports: a package names what it offers without importing heavy modules up front.

``__getattr__ = lazy_exports(__name__, {"ChatLocalSLM": "slmkit.agent.chat_local"})`` makes
``package.ChatLocalSLM`` import its module on first access, so ``import slmkit`` loads neither llama.cpp, torch nor
chromadb.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that resolves ``name`` from the module ``exports[name]`` on first access."""

    def resolve(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return resolve
