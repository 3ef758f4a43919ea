"""Base class for slmkit settings (pydantic, strict about unknown keys, serialisable) and where slmkit keeps files."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

__all__ = ["SlmkitConfig", "cache_dir"]


def cache_dir() -> Path:
    """Derived files (assembled models, embedding tables): ``$SLMKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/slmkit``,
    else ``~/.cache/slmkit``. Everything in it can be rebuilt from the installed packages."""
    if env := os.environ.get("SLMKIT_CACHE_DIR"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "slmkit"


class SlmkitConfig(BaseModel):
    """Settings object shared by every part: a typo in a field name is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
