"""``check_prompt_fits``: refuse a request whose own text cannot fit the model's context window, up front.

The assistant adds instructions and a few short passages to the question (and the last turn of the history). A
prompt too long for every route fails late and under the wrong name: the routing policy refuses it with
``NoRouteError`` (503, as if retrying could help), or a local model refuses it with ``ContextOverflowError``, which
the router reports as ``RoutesFailedError`` (502). A question that overflows the window is the client's error, and
OpenAI answers it 400 ``context_length_exceeded``; checking here also spares the PII scan, the embedding and the
retrieval of a 10,000-word question.

Each route is measured as it will measure itself: the policy's estimate (tiktoken), and for a local model also its
own tokenizer (SmolLM2's counts up to twice as many tokens on unusual text). The request is refused only when no
route can take it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.messages import BaseMessage

from slmkit.agent.serve.convert import RequestError

__all__ = ["check_prompt_fits", "context_windows", "prompt_reserve"]

Counter = Callable[[str], int]

_MESSAGE_TOKENS = 4
"""Per-message overhead of a chat template (role markers), as the routing policy counts it."""
_CHARS_PER_TOKEN = 4
"""English text, cl100k and SmolLM2's tokenizer alike: about four characters a token."""


def context_windows(model: Any) -> list[tuple[int, Any]]:
    """(context window, model) of every model the assistant may answer with: the routes of a routed model, else
    the model itself when it has an ``n_ctx``; empty when they do not say (nothing is checked then)."""
    routes = getattr(getattr(model, "policy", None), "routes", None)
    if isinstance(routes, dict) and routes:
        windows = [(getattr(r, "context_window", None), getattr(r, "model", None)) for r in routes.values()]
        return [(w, m) for w, m in windows if isinstance(w, int)] if all(isinstance(w, int) for w, _ in windows) else []
    n_ctx = getattr(model, "n_ctx", None)
    return [(n_ctx, model)] if isinstance(n_ctx, int) else []


def _counter(model: Any) -> Counter:
    """The policy's estimate, and for a local model the larger of it and the model's exact count (never a
    tokenizer that would be downloaded: only ``ChatLocalSLM`` counts with its own)."""
    from slmkit.agent.chat_local import ChatLocalSLM
    from slmkit.core.tokens import estimate_tokens

    if isinstance(model, ChatLocalSLM):
        return lambda text: max(estimate_tokens(text), model.get_num_tokens(text))
    return estimate_tokens


def prompt_reserve(assistant: Any) -> int:
    """Tokens the assistant adds to the client's text: instructions, ``k`` passage excerpts, the expected answer."""
    config = getattr(assistant, "config", None)
    instructions = str(getattr(config, "instructions", "") or "")
    k = int(getattr(config, "k", 3))
    passage_chars = int(getattr(config, "passage_chars", 400))
    policy = getattr(getattr(assistant, "model", None), "policy", None)
    answer = int(getattr(policy, "expected_output_tokens", 0) or getattr(config, "max_tokens", 0) or 256)
    passages = k * (passage_chars // _CHARS_PER_TOKEN + _MESSAGE_TOKENS)
    return len(instructions) // _CHARS_PER_TOKEN + passages + answer + 2 * _MESSAGE_TOKENS


def check_prompt_fits(assistant: Any, question: str, history: Sequence[BaseMessage]) -> None:
    """Raise a 400 ``context_length_exceeded`` when the question (with the history turns the assistant keeps) and
    what the assistant adds fit no context window the assistant has."""
    windows = context_windows(getattr(assistant, "model", None))
    if not windows:
        return
    turns = int(getattr(getattr(assistant, "config", None), "history_turns", 1))
    kept = list(history[-2 * turns :]) if turns else []
    texts = [question, *(m.content for m in kept if isinstance(m.content, str))]
    reserve = prompt_reserve(assistant) + _MESSAGE_TOKENS * len(texts)
    largest = max(window for window, _ in windows)
    if sum(len(t.encode("utf-8", "surrogatepass")) for t in texts) + reserve <= min(w for w, _ in windows):
        return  # a token spans at least one byte: this fits everywhere without counting
    needed = largest + 1
    for window, model in sorted(windows, key=lambda wm: -wm[0]):
        count = _counter(model)
        needed = sum(count(t) for t in texts) + reserve
        if needed <= window:
            return
    raise RequestError(
        f"This model's maximum context length is {largest} tokens. The question and the history the assistant keeps "
        f"need about {needed - reserve} tokens, and the instructions, passages and answer about {reserve} more. "
        "Shorten the question (or the last turns of the conversation).",
        param="messages",
        code="context_length_exceeded",
    )
