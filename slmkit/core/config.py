"""Base class for slmkit settings: pydantic, strict about unknown keys, serialisable."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["SlmkitConfig"]


class SlmkitConfig(BaseModel):
    """Settings object shared by every part: a typo in a field name is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
