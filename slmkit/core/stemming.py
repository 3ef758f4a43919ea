"""The Snowball English stemmer (PyStemmer), one for all of slmkit.

BM25 terms, citations, excerpts and the grounding guard's lexical signal all compare stemmed words; stemming them
in one place keeps a word and its inflections matching the same way in retrieval and in the guards.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from typing import Any

from slmkit.core.errors import MissingDependencyError

__all__ = ["stem_words"]

_LOCK = threading.Lock()


@functools.cache
def _stemmer() -> Any:
    try:
        import Stemmer
    except ImportError as exc:
        raise MissingDependencyError(
            "PyStemmer", purpose="matching words with their inflections (BM25, citations, grounding)"
        ) from exc
    return Stemmer.Stemmer("english")


def stem_words(words: Sequence[str]) -> list[str]:
    """Snowball stems of ``words`` (already lower-cased), in order."""
    stemmer = _stemmer()
    with _LOCK:  # a PyStemmer object is not thread-safe; async retrieval and guards run on executor threads
        return list(stemmer.stemWords(words))
