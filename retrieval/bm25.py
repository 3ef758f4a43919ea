"""BM25 over chunk texts with ``bm25s``: terms in, ranked chunk ids out.

Terms are lower-cased words with English stop words removed and a Snowball (PyStemmer) stem, the same function
for chunks and queries. The knowledge base keeps each chunk's terms in its manifest, so after an ingestion the
index is rebuilt from stored terms (no re-reading, no re-tokenising) and saved beside the manifest; bm25s has no
in-place update, and a rebuild of 100,000 chunks takes seconds.

    chunk text --terms()--> manifest --BM25Index.build()--> sparse index --save()/load()--> disk
    query      --terms()--> BM25Index.search(n, mask) --> [(chunk id, score), ...]
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmkit.core.errors import MissingDependencyError
from slmkit.core.stemming import stem_words

if TYPE_CHECKING:
    import numpy as np

__all__ = ["BM25Index", "terms"]

_WORD = re.compile(r"(?u)\b\w\w+\b")
_IDS_FILE = "ids.json"


@functools.lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    try:
        from bm25s.stopwords import STOPWORDS_EN
    except ImportError as exc:
        raise MissingDependencyError("bm25s", extra="retrieval", purpose="BM25 search") from exc
    return frozenset(STOPWORDS_EN)


def terms(text: str) -> list[str]:
    """BM25 terms of ``text``: lower-cased words of two or more characters, stop words out, stemmed."""
    stopwords = _stopwords()
    return stem_words([w for w in _WORD.findall(text.lower()) if w not in stopwords])


class BM25Index:
    """An immutable bm25s index over chunk ids; build a new one when chunks change."""

    def __init__(self, ids: list[str], index: Any) -> None:
        self.ids = ids
        self._index = index
        self._row = {chunk_id: row for row, chunk_id in enumerate(ids)}

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def build(cls, ids: list[str], chunk_terms: list[list[str]], *, k1: float, b: float) -> BM25Index:
        return cls._build(ids, chunk_terms, k1=k1, b=b)

    @classmethod
    def build_numbered(
        cls, ids: list[str], numbers: list[list[int]], vocab: dict[str, int], *, k1: float, b: float
    ) -> BM25Index:
        """``build`` from terms given as numbers with their vocabulary (``Manifest.all_term_ids``): the same scores,
        a fraction of the memory; after a big ingestion this rebuild is the process's peak (61,872 chunks: +598 MB
        as lists of strings, +230 MB as numbers)."""
        return cls._build(ids, (numbers, vocab), k1=k1, b=b)

    @classmethod
    def _build(cls, ids: list[str], corpus: Any, *, k1: float, b: float) -> BM25Index:
        import bm25s

        index = bm25s.BM25(k1=k1, b=b, method="lucene")
        if ids:
            index.index(corpus, show_progress=False)
        return cls(ids, index)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        if self.ids:
            self._index.save(str(folder))
        (folder / _IDS_FILE).write_text(json.dumps(self.ids))

    @classmethod
    def load(cls, folder: Path) -> BM25Index:
        import bm25s

        ids = json.loads((folder / _IDS_FILE).read_text())
        index = bm25s.BM25.load(str(folder)) if ids else bm25s.BM25()
        return cls(ids, index)

    def mask(self, allowed: set[str]) -> np.ndarray:
        """A 0/1 weight per row: 1 for the ids in ``allowed`` (a metadata filter's result)."""
        import numpy as np

        weights = np.zeros(len(self.ids), dtype="float32")
        rows = [self._row[i] for i in allowed if i in self._row]
        weights[rows] = 1.0
        return weights

    def scores(self, query: str, mask: np.ndarray | None = None) -> np.ndarray:
        """The query's BM25 score for every row (all zeros when it shares no term with the index)."""
        import numpy as np

        query_terms = [t for t in terms(query) if t in self._index.vocab_dict] if self.ids else []
        if not query_terms:
            return np.zeros(len(self.ids), dtype="float32")
        return np.asarray(self._index.get_scores(query_terms, weight_mask=mask))

    def search(self, query: str, n: int, mask: np.ndarray | None = None) -> list[tuple[str, float]]:
        """Up to ``n`` (chunk id, score) pairs, best first; chunks sharing no term with the query are left out."""
        import numpy as np

        scores = self.scores(query, mask)
        n = min(n, len(scores))
        if n <= 0:
            return []
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self.ids[row], float(scores[row])) for row in top if scores[row] > 0]

    def score_ids(self, query: str, ids: list[str]) -> np.ndarray:
        """Scores of the given chunks (0 for ids not in the index)."""
        import numpy as np

        scores = self.scores(query)
        return np.array([scores[self._row[i]] if i in self._row else 0.0 for i in ids], dtype="float64")
