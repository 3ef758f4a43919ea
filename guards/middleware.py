"""``GuardMiddleware``: the same guards for a LangChain ``create_agent`` agent (langchain >= 1.0 middleware).

Every model call of the agent loop is wrapped:

    state messages (real values) -> input guards -> the model sees pseudonyms / redactions
    model answer -> pseudonyms restored in the text and in tool-call arguments (tools get real values)
                 -> grounding against the tool results since the last user message (the retrieved context)
                 -> ``response_metadata['guard_report']`` on the AIMessage that goes into the state

The state keeps the real values, so the user sees them and each model call pseudonymizes afresh with the same
vault (one per ``thread_id``, else one per middleware): a value keeps its placeholder all conversation long.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import AIMessage

from slmkit.core.errors import GuardBlockedError
from slmkit.guards.base import Guard, GuardCall
from slmkit.guards.messages import context_from_messages, guard_input, guard_output, question_from_messages
from slmkit.guards.vault import PIIVault

__all__ = ["GuardMiddleware"]


class GuardMiddleware(AgentMiddleware):
    """Agent middleware that runs input guards before and output guards after every model call.

    Example:
        .. code-block:: python

            from langchain.agents import create_agent
            from slmkit.guards import GroundingGuard, GuardMiddleware, PIIGuard

            pii = PIIGuard()
            agent = create_agent(llm, tools=[search], middleware=[
                GuardMiddleware(input_guards=[pii], output_guards=[pii, GroundingGuard()])])
            result = agent.invoke({"messages": [("user", "Where does Ada Lovelace live?")]})
            result["messages"][-1].response_metadata["guard_report"]
    """

    def __init__(
        self,
        input_guards: Sequence[Guard] = (),
        output_guards: Sequence[Guard] = (),
        *,
        guards: Sequence[Guard] = (),
        ground_tool_calls: bool = False,
    ) -> None:
        """``ground_tool_calls``: also run output guards other than PII restoring on answers that call tools."""
        super().__init__()
        self.input_guards = [*input_guards, *guards]
        self.output_guards = [*output_guards, *guards]
        self.ground_tool_calls = ground_tool_calls
        self._vaults: dict[str, PIIVault] = {}
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return "GuardMiddleware"

    def _vault(self) -> PIIVault:
        thread = ""
        try:
            from langgraph.config import get_config

            thread = str(get_config().get("configurable", {}).get("thread_id", ""))
        except RuntimeError:  # not inside a graph run
            pass
        with self._lock:
            return self._vaults.setdefault(thread, PIIVault())

    def _before(self, request: ModelRequest) -> tuple[GuardCall, ModelRequest]:
        call = GuardCall(
            vault=self._vault(),
            question=question_from_messages(request.messages),
            context=context_from_messages(request.messages),
        )
        try:
            messages = guard_input(list(request.messages), self.input_guards, call)
            system = request.system_message
            if system is not None:
                system = guard_input(system, self.input_guards, call)
        except GuardBlockedError as exc:
            exc.report = call.report
            raise
        return call, request.override(messages=messages, system_message=system)

    def _after(self, response: ModelResponse, call: GuardCall) -> ModelResponse:
        result = []
        for message in response.result:
            if isinstance(message, AIMessage):
                guards = self.output_guards
                if message.tool_calls and not self.ground_tool_calls:
                    guards = [g for g in guards if g.name != "grounding"]
                message = guard_output(message, guards, call)
            result.append(message)
        return ModelResponse(result=result, structured_response=response.structured_response)

    def wrap_model_call(self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]) -> ModelResponse:
        call, guarded = self._before(request)
        return self._after(_as_response(handler(guarded)), call)

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> ModelResponse:
        call, guarded = self._before(request)
        return self._after(_as_response(await handler(guarded)), call)


def _as_response(value: Any) -> ModelResponse:
    if isinstance(value, ModelResponse):
        return value
    if isinstance(value, AIMessage):
        return ModelResponse(result=[value])
    return value.model_response  # type: ignore[no-any-return]  # ExtendedModelResponse
