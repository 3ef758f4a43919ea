"""The local SLM as the grounding guard's token scorer.

``slmkit.guards`` may not import the agent layer, so it defines the ``TokenScorer`` protocol and a scorer over any
``llama_cpp.Llama`` (``LlamaTokenScorer``); this module connects the two: it acquires the shared ``LocalModel`` of
a catalogue model (the same one ``ChatLocalSLM`` uses, loaded on first use) and scores under its lock, so the
guard and the chat model can share one llama.cpp context and its KV cache.

Example:
    .. code-block:: python

        from slmkit.agent.grounding_scorer import local_grounding_scorer
        from slmkit.guards import GroundingGuard

        guard = GroundingGuard(signals=("lexical", "structured", "embedding", "slm"), scorer=local_grounding_scorer)
"""

from __future__ import annotations

from slmkit.agent.catalogue import DEFAULT_MODEL
from slmkit.agent.llama_runtime import RuntimeSettings, acquire, default_threads
from slmkit.guards.slm_scoring import LlamaTokenScorer

__all__ = ["local_grounding_scorer"]


def local_grounding_scorer(
    model: str = DEFAULT_MODEL, *, n_ctx: int = 4096, n_threads: int | None = None, n_batch: int = 512
) -> LlamaTokenScorer:
    """A token scorer on the local catalogue ``model`` (loads it now if no chat model has yet)."""
    local = acquire(
        RuntimeSettings(model=model, n_ctx=n_ctx, n_threads=n_threads or default_threads(), n_batch=n_batch)
    )
    return LlamaTokenScorer(local.llama, lock=local.lock)
