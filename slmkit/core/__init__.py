"""The ground every slmkit part stands on: errors, configuration base, token counting, lazy exports.

Exports resolve on first access, so importing a part of slmkit does not pull in langchain-core or tiktoken until
they are used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slmkit.core.lazy import lazy_exports

if TYPE_CHECKING:
    from slmkit.core.config import SlmkitConfig
    from slmkit.core.errors import (
        ConfigurationError,
        ContextOverflowError,
        MalformedOutputError,
        MissingDependencyError,
        ModelIntegrityError,
        ModelLoadError,
        ModelNotFoundError,
        SlmkitError,
    )
    from slmkit.core.tokens import ESTIMATE_ENCODING, GGUFTokenCounter, TiktokenCounter, TokenCounter, estimate_tokens

__all__ = [
    "ESTIMATE_ENCODING",
    "ConfigurationError",
    "ContextOverflowError",
    "GGUFTokenCounter",
    "MalformedOutputError",
    "MissingDependencyError",
    "ModelIntegrityError",
    "ModelLoadError",
    "ModelNotFoundError",
    "SlmkitConfig",
    "SlmkitError",
    "TiktokenCounter",
    "TokenCounter",
    "estimate_tokens",
    "lazy_exports",
]

_LAZY = {
    "SlmkitConfig": "slmkit.core.config",
    "ConfigurationError": "slmkit.core.errors",
    "ContextOverflowError": "slmkit.core.errors",
    "MalformedOutputError": "slmkit.core.errors",
    "MissingDependencyError": "slmkit.core.errors",
    "ModelIntegrityError": "slmkit.core.errors",
    "ModelLoadError": "slmkit.core.errors",
    "ModelNotFoundError": "slmkit.core.errors",
    "SlmkitError": "slmkit.core.errors",
    "ESTIMATE_ENCODING": "slmkit.core.tokens",
    "GGUFTokenCounter": "slmkit.core.tokens",
    "TiktokenCounter": "slmkit.core.tokens",
    "TokenCounter": "slmkit.core.tokens",
    "estimate_tokens": "slmkit.core.tokens",
}

__getattr__ = lazy_exports(__name__, _LAZY)
