"""``Guarded``: any Runnable (chat model, chain) with input and output guards around it; itself a Runnable.

    input ─► input guards (PII: pseudonymize / redact / block ...) ─► runnable ─► output guards
          │                                                                    (restore pseudonyms, grounding)
          └─ context and question for grounding: input["context"] / input["question"] (or the output's "context",
             as retrieval chains return it), else the last human message and tool results in the messages

The pseudonym vault lives per conversation: per ``configurable.thread_id`` when the config names one, else one per
``Guarded`` instance. Reports land in ``response_metadata['guard_report']`` (messages) or ``output['guard_report']``
(dict outputs); a plain string output has nowhere to carry one.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import ensure_config, run_in_executor

from slmkit.core.errors import GuardBlockedError
from slmkit.guards.base import Guard, GuardCall
from slmkit.guards.messages import (
    GuardedStream,
    context_from_messages,
    guard_input,
    guard_output,
    guard_stream,
    question_from_messages,
)
from slmkit.guards.vault import PIIVault

__all__ = ["Guarded"]


class Guarded(Runnable[Any, Any]):
    """A Runnable with guards: works on chat models and chains, sync, async and streaming.

    Example:
        .. code-block:: python

            from slmkit.guards import GroundingGuard, Guarded, PIIGuard

            pii = PIIGuard()
            safe_llm = Guarded(remote_llm, input_guards=[pii], output_guards=[pii])
            msg = safe_llm.invoke("Write to Ada Lovelace at ada@example.org")   # the LLM saw <PERSON_1>, <EMAIL...>
            msg.response_metadata["guard_report"].findings["input"]

            rag = Guarded(prompt | llm, output_guards=[GroundingGuard(action="abstain")])
            rag.invoke({"context": docs, "question": "..."})
    """

    def __init__(
        self,
        runnable: Runnable[Any, Any],
        input_guards: Sequence[Guard] = (),
        output_guards: Sequence[Guard] = (),
        *,
        guards: Sequence[Guard] = (),
        context_key: str = "context",
        question_key: str = "question",
    ) -> None:
        """``guards`` are added to both lists (a PII guard pseudonymizes on the way in and restores on the way out)."""
        self.runnable = runnable
        self.input_guards = [*input_guards, *guards]
        self.output_guards = [*output_guards, *guards]
        self.context_key = context_key
        self.question_key = question_key
        self._vaults: dict[str, PIIVault] = {}
        self._lock = threading.Lock()

    @property
    def InputType(self) -> Any:  # noqa: N802 - LangChain's name
        return self.runnable.InputType

    @property
    def OutputType(self) -> Any:  # noqa: N802 - LangChain's name
        return self.runnable.OutputType

    # -- per call --------------------------------------------------------------------------------------------
    def _vault(self, config: RunnableConfig) -> PIIVault:
        thread = str((config.get("configurable") or {}).get("thread_id", ""))
        with self._lock:
            return self._vaults.setdefault(thread, PIIVault())

    def _start(self, value: Any, config: RunnableConfig) -> tuple[GuardCall, Any]:
        call = GuardCall(vault=self._vault(config))
        if isinstance(value, Mapping):
            context = value.get(self.context_key)
            if context is not None:
                call.context = context if isinstance(context, list | tuple) else [context]
            question = value.get(self.question_key)
            call.question = question if isinstance(question, str) else None
        messages = _messages(value)
        if messages:
            call.question = call.question or question_from_messages(messages)
            call.context = call.context or context_from_messages(messages)
        try:
            guarded = guard_input(value, self.input_guards, call)
        except GuardBlockedError as exc:
            exc.report = call.report
            raise
        return call, guarded

    def _finish(self, output: Any, call: GuardCall) -> Any:
        if isinstance(output, Mapping) and not call.context and output.get(self.context_key) is not None:
            context = output[self.context_key]
            call.context = context if isinstance(context, list | tuple) else [context]
        return guard_output(output, self.output_guards, call)

    # -- Runnable --------------------------------------------------------------------------------------------
    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        config = ensure_config(config)
        call, guarded = self._start(input, config)
        output = self.runnable.invoke(guarded, config, **kwargs)
        return self._finish(output, call)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        config = ensure_config(config)
        call, guarded = await run_in_executor(config, self._start, input, config)
        output = await self.runnable.ainvoke(guarded, config, **kwargs)
        return await run_in_executor(config, self._finish, output, call)

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        config = ensure_config(config)
        call, guarded = self._start(input, config)
        yield from guard_stream(self.runnable.stream(guarded, config, **kwargs), self.output_guards, call)

    async def astream(
        self,
        input: Any,
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[Any]:
        config = ensure_config(config)
        call, guarded = await run_in_executor(config, self._start, input, config)
        stream = GuardedStream(self.output_guards, call)
        async for chunk in self.runnable.astream(guarded, config, **kwargs):
            for out in stream.feed(chunk):
                yield out
        for out in await run_in_executor(config, stream.close):
            yield out

    def __repr__(self) -> str:
        names = [g.name for g in self.input_guards], [g.name for g in self.output_guards]
        return f"Guarded({self.runnable!r}, input_guards={names[0]}, output_guards={names[1]})"


def _messages(value: Any) -> list[BaseMessage]:
    if isinstance(value, list) and all(isinstance(m, BaseMessage) for m in value):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("messages"), list):
        return [m for m in value["messages"] if isinstance(m, BaseMessage)]
    return []
