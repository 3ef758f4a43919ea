"""``CrossEncoderReranker``: re-scores (query, passage) pairs with the packaged ms-marco-MiniLM-L-12-v2 cross-encoder.

A bi-encoder embeds query and passage apart; a cross-encoder reads them together and sees which words of the
passage answer which words of the question, so it orders a short list of candidates better (and costs a model
call per candidate, so it only ever sees a short list). One call:

    (query, passage) pairs -> tokenizer (truncated to ``max_length`` tokens, longest side first)
        -> sorted by length, batches of ``batch_size`` (default 1) padded to their longest pair
        -> ONNX Runtime -> one logit per pair -> back in the caller's order

``score`` returns the logits; ``compress_documents`` (LangChain's ``BaseDocumentCompressor``, so it works inside
``ContextualCompressionRetriever``) keeps the ``top_n`` best documents, each with ``metadata["rerank_score"]``, the
sigmoid of its logit: a probability-like relevance in [0, 1], comparable across queries.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import Field

from slmkit.core.onnx_models import RERANKER_MODEL, onnx_session, onnx_tokenizer

if TYPE_CHECKING:
    import numpy as np

__all__ = ["CrossEncoderReranker", "rerank_score"]


class CrossEncoderReranker(BaseDocumentCompressor):
    """Reranks documents by a cross-encoder's relevance to the query; keeps the best ``top_n``.

    Construction is cheap; the model loads on first use, once per process, shared by every instance.

    Example:
        .. code-block:: python

            reranker = CrossEncoderReranker(top_n=3)
            reranker.score("when was the bridge opened?", ["It opened in 1932.", "Bridges span rivers."])
            # array([ 6.1, -9.8], dtype=float32): logits, higher is more relevant
            best = reranker.compress_documents(docs, "when was the bridge opened?")
            best[0].metadata["rerank_score"]  # 0.998
    """

    model: str = RERANKER_MODEL
    """Packaged ONNX cross-encoder id (``slmkit.core.onnx_models.ONNX_MODELS``)."""
    top_n: int = Field(default=3, ge=1)
    """Documents ``compress_documents`` returns (the best ones, best first)."""
    max_length: int = Field(default=512, ge=8, le=512)
    """Tokens of query + passage the model reads; longer pairs are cut, the longer side first."""
    batch_size: int = Field(default=1, ge=1)
    """Pairs per model call. 1 is fastest on CPU (no padding) and keeps scores independent of the other
    candidates: the INT8 model quantises each call's activations with one range, so in a batch a pair's logit
    moves with its neighbours (by up to 0.3 on SQuAD passages)."""

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """Raw relevance logits of ``texts`` to ``query``, in the order given (higher is more relevant)."""
        import numpy as np

        if not texts:
            return np.zeros(0, dtype="float32")
        return _encoder(self.model, self.max_length).logits(query, list(texts), self.batch_size)

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """The ``top_n`` most relevant documents, best first, each with ``metadata["rerank_score"]``."""
        import numpy as np

        docs = list(documents)
        logits = self.score(query, [doc.page_content for doc in docs])
        best = np.argsort(-logits, kind="stable")[: self.top_n]
        return [
            docs[i].model_copy(update={"metadata": {**docs[i].metadata, "rerank_score": rerank_score(logits[i])}})
            for i in best
        ]


def rerank_score(logit: float) -> float:
    """The logit as ``metadata["rerank_score"]``: its sigmoid, rounded like the retriever's other scores."""
    return round(1.0 / (1.0 + math.exp(-float(logit))), 6)


class _CrossEncoder:
    """A loaded model: an ONNX session (shared per process) and a tokenizer set to one ``max_length``."""

    def __init__(self, session: Any, tokenizer: Any, max_length: int) -> None:
        tokenizer.enable_truncation(max_length=max_length, strategy="longest_first")
        tokenizer.no_padding()  # the packaged tokenizer pads every pair to 512: batches are padded here instead
        self.session = session
        self.tokenizer = tokenizer
        self.inputs = {node.name for node in session.get_inputs()}

    def logits(self, query: str, texts: list[str], batch_size: int) -> np.ndarray:
        import numpy as np

        encodings = self.tokenizer.encode_batch([(query, text) for text in texts])
        lengths = [len(e.ids) for e in encodings]
        order = np.argsort(lengths, kind="stable")  # similar lengths share a batch: little padding
        out = np.empty(len(texts), dtype="float32")
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = max(lengths[row] for row in rows)
            arrays = {name: np.zeros((len(rows), width), dtype="int64") for name in _INPUTS}
            for j, row in enumerate(rows):
                encoding, n = encodings[row], lengths[row]
                arrays["input_ids"][j, :n] = encoding.ids
                arrays["attention_mask"][j, :n] = encoding.attention_mask
                arrays["token_type_ids"][j, :n] = encoding.type_ids
            feeds = {name: array for name, array in arrays.items() if name in self.inputs}
            logits = self.session.run(None, feeds)[0]
            out[rows] = np.asarray(logits, dtype="float32").reshape(len(rows), -1)[:, 0]
        return out


_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_LOCK = threading.Lock()
_ENCODERS: dict[tuple[str, int], _CrossEncoder] = {}


def _encoder(model: str, max_length: int) -> _CrossEncoder:
    """The loaded model for ``(model, max_length)``, loaded on first use; threads wait for one load."""
    key = (model, max_length)
    with _LOCK:
        if key not in _ENCODERS:
            _ENCODERS[key] = _CrossEncoder(onnx_session(model), onnx_tokenizer(model), max_length)
        return _ENCODERS[key]
