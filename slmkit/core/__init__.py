"""The ground every slmkit part stands on: errors, configuration base, token counting."""

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
from slmkit.core.tokens import (
    ESTIMATE_ENCODING,
    GGUFTokenCounter,
    TiktokenCounter,
    TokenCounter,
    estimate_tokens,
)

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
]
