"""Imports that leave torch out where it is only imported, never used.

spaCy (through thinc) and Presidio (through its Hugging Face NER engine) import torch and transformers whenever they
are installed, and they are, for the PyTorch embedder. slmkit's PII detection uses neither: on a 2-core laptop the
two cost 5-15 s of every cold ``slmkit ask``, more than the rest of the start together.
"""

from __future__ import annotations

import importlib.abc
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.machinery import ModuleSpec
from types import ModuleType

__all__ = ["without_torch"]

_UNUSED = ("torch", "transformers")


class _Refuse(importlib.abc.MetaPathFinder):
    """Reports ``names`` (and their submodules) as not installed, to one thread only."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)
        self.thread = threading.get_ident()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname.split(".")[0] in self.names and threading.get_ident() == self.thread:
            raise ModuleNotFoundError(f"No module named {fullname!r} (left out by slmkit)", name=fullname)
        return None


@contextmanager
def without_torch(names: Sequence[str] = _UNUSED) -> Iterator[None]:
    """Within the block, this thread's imports see ``names`` as missing, unless they are imported already.

    Libraries that import them optionally (``try: import torch``) then take their no-torch path for the life of the
    process: thinc has no PyTorch layers, Presidio no ``TransformersNlpEngine``. Other threads import as usual, and
    so does this one after the block.
    """
    missing = [name for name in names if name not in sys.modules]
    if not missing:
        yield
        return
    finder = _Refuse(missing)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
