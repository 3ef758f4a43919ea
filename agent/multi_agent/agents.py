"""The agents a supervisor delegates to; each turns one task into a :class:`StepResult`.

    QAAgent    task -> Assistant.ask (retrieval + local SLM, its own router and guards) -> answer with citations
    ToolAgent  task -> Guarded(SLM.bind_tools(tools)) -> grammar-constrained tool call -> run the tool -> result
                    fed back -> ... -> Guarded(SLM) answers from the results
    LLMAgent   task -> Guarded(router pinned to the LLM) -> answer (PII pseudonymized on the way out, restored back)

Every model call is a routed model inside ``Guarded``, so each result carries the ``RoutingDecision`` and the
``GuardReport`` of the call that produced its text; tool runs carry their own (``ask_llm`` is an ``LLMAgent``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import BaseTool
from pydantic import BaseModel, ConfigDict, Field

from slmkit.core.errors import ConfigurationError
from slmkit.guards.base import Guard
from slmkit.guards.messages import REPORT_KEY
from slmkit.guards.report import GuardReport
from slmkit.guards.runnable import Guarded
from slmkit.routing.decision import METADATA_KEY, RoutingDecision

__all__ = ["Agent", "LLMAgent", "QAAgent", "StepResult", "ToolAgent", "ToolRun"]


class ToolRun(BaseModel):
    """One tool call the SLM made: the arguments, what the tool returned, and (for ``ask_llm``) how it was routed."""

    name: str
    args: dict[str, Any]
    output: str
    error: bool = False
    """True when the tool raised; ``output`` then holds the error, which the model saw."""
    routing: RoutingDecision | None = None
    guard_report: GuardReport | None = None


class StepResult(BaseModel):
    """What one agent made of one task."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    agent: str
    """The agent that handled the step."""
    task: str
    text: str
    routing: RoutingDecision | None = None
    """The router's decision for the model call that produced ``text``."""
    guard_report: GuardReport | None = None
    tool_runs: list[ToolRun] = Field(default_factory=list)
    citations: list[Any] = Field(default_factory=list)
    """``Citation``s, when the docs agent answered."""
    abstained: bool = False
    """True when the docs agent found nothing relevant and said so."""


class Agent(Protocol):
    """Anything that does one task: a name (what the planner calls it), a description, and ``run``."""

    name: str
    description: str

    def run(self, task: str, *, context: str = "") -> StepResult: ...


class AnswersQuestions(Protocol):
    """The part of ``slmkit.agent.Assistant`` the docs agent uses."""

    def ask(self, question: str) -> Any: ...


def _decision(message: BaseMessage) -> RoutingDecision | None:
    return RoutingDecision.from_message(message) if METADATA_KEY in message.response_metadata else None


def _report(message: BaseMessage) -> GuardReport | None:
    report = message.response_metadata.get(REPORT_KEY)
    return report if isinstance(report, GuardReport) else None


def _text(message: BaseMessage) -> str:
    return message.text.strip()


def _with_context(task: str, context: str) -> str:
    return f"{task}\n\nResults of earlier steps:\n{context}" if context else task


class QAAgent:
    """Answers from the knowledge base: the ``Assistant`` (retrieval, local SLM through its router, guards)."""

    name = "docs"
    description = "questions about the organisation's documents: its policies, products and people"

    def __init__(self, assistant: AnswersQuestions) -> None:
        self.assistant = assistant

    def run(self, task: str, *, context: str = "") -> StepResult:
        """Earlier steps' results are not added: the question alone retrieves best."""
        answer = self.assistant.ask(task)
        return StepResult(
            agent=self.name,
            task=task,
            text=answer.text,
            routing=answer.routing,
            guard_report=answer.guard_report,
            citations=list(answer.citations),
            abstained=answer.abstained,
        )


_LLM_PROMPT = (
    "You are a careful assistant. Answer the request directly and briefly. Words in angle brackets such as "
    "<PERSON_1> stand for private data: copy them exactly as written, angle brackets included."
)


class LLMAgent:
    """The larger model, through the router (budget, fallbacks) and guards (PII pseudonymized, then restored)."""

    name = "llm"
    description = "a larger language model for hard reasoning, writing and general knowledge"

    def __init__(self, model: BaseChatModel, *, guards: Sequence[Guard] = (), system_prompt: str = _LLM_PROMPT) -> None:
        """``model``: the router pinned to the LLM route (``Supervisor`` builds it)."""
        self.model = model
        self.guards = list(guards)
        self.system_prompt = system_prompt

    def run(self, task: str, *, context: str = "") -> StepResult:
        # A fresh Guarded per task: its pseudonym vault lives exactly as long as the task.
        guarded = Guarded(self.model, guards=self.guards)
        message = guarded.invoke([SystemMessage(self.system_prompt), HumanMessage(_with_context(task, context))])
        return StepResult(
            agent=self.name, task=task, text=_text(message), routing=_decision(message), guard_report=_report(message)
        )


_TOOL_PROMPT = "You are a helpful assistant. Use the tools to do the task, then answer briefly from their results."
_ANSWER_PROMPT = "You are a helpful assistant. Answer briefly."
_ANSWER_FROM_RESULTS = "{results}\n\nUsing the results above, answer: {task}"


class ToolAgent:
    """The local SLM with LangChain tools: grammar-constrained calls, run here, results fed back.

    The first call must be a tool call (a step goes to this agent because it needs a tool); later calls may call
    another tool or answer, up to ``max_tool_calls`` calls, after which the model is asked to answer from the
    results, without tools. One call is the default: small models asked whether to call again usually do.
    """

    name = "tools"
    description = "uses tools"

    def __init__(
        self,
        model: BaseChatModel,
        tools: Sequence[BaseTool],
        *,
        guards: Sequence[Guard] = (),
        max_tool_calls: int = 1,
        system_prompt: str = _TOOL_PROMPT,
    ) -> None:
        if not tools:
            raise ConfigurationError("A ToolAgent needs at least one tool.")
        if max_tool_calls < 1:
            raise ConfigurationError(f"max_tool_calls must be at least 1, not {max_tool_calls}.")
        self.model = model
        self.tools = {t.name: t for t in tools}
        self.guards = list(guards)
        self.max_tool_calls = max_tool_calls
        self.system_prompt = system_prompt
        self.description = "tasks for its tools: " + ", ".join(
            f"{t.name} ({_first_line(t.description)})" for t in tools
        )

    def run(self, task: str, *, context: str = "") -> StepResult:
        messages: list[BaseMessage] = [SystemMessage(self.system_prompt), HumanMessage(_with_context(task, context))]
        runs: list[ToolRun] = []
        tools = list(self.tools.values())
        for n in range(self.max_tool_calls):
            caller = Guarded(self.model.bind_tools(tools, tool_choice="any" if n == 0 else "auto"), guards=self.guards)
            message = caller.invoke(messages)
            if not isinstance(message, AIMessage) or not message.tool_calls:
                return self._result(task, message, runs)
            messages.append(message)
            for call in message.tool_calls:
                result = self._run_tool(call)
                messages.append(result)
                runs.append(_tool_run(call, result))
        # A fresh prompt with the results as text: shown the calls, a small model goes on writing calls as text.
        results = "\n".join(f"- {r.name}({_args(r.args)}) -> {r.output}" for r in runs)
        prompt = _ANSWER_FROM_RESULTS.format(task=task, results=results)  # earlier steps would only distract here
        answer = Guarded(self.model, guards=self.guards).invoke([SystemMessage(_ANSWER_PROMPT), HumanMessage(prompt)])
        return self._result(task, answer, runs)

    def _run_tool(self, call: Any) -> ToolMessage:
        tool = self.tools[call["name"]]  # the grammar only lets the model name a bound tool
        try:
            result = tool.invoke(call)
        except Exception as exc:  # the model sees the error and may try again, as LangGraph's ToolNode does
            return ToolMessage(f"{type(exc).__name__}: {exc}", tool_call_id=call["id"], name=tool.name, status="error")
        if isinstance(result, ToolMessage):
            return result
        return ToolMessage(str(result), tool_call_id=call["id"], name=tool.name)

    def _result(self, task: str, message: BaseMessage, runs: list[ToolRun]) -> StepResult:
        return StepResult(
            agent=self.name,
            task=task,
            text=_text(message),
            routing=_decision(message),
            guard_report=_report(message),
            tool_runs=runs,
        )


def _tool_run(call: Any, message: ToolMessage) -> ToolRun:
    nested = message.artifact if isinstance(message.artifact, StepResult) else None
    return ToolRun(
        name=call["name"],
        args=dict(call["args"]),
        output=message.text,
        error=message.status == "error",
        routing=nested.routing if nested else None,
        guard_report=nested.guard_report if nested else None,
    )


def _args(args: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in args.items())


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0].rstrip(".")
