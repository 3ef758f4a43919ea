"""``Supervisor``: split a request into steps and delegate each to an agent, all through the router and the guards.

One request:

    request -> Planner (split into parts; the local SLM picks an agent per part under a grammar)
    for each step (with the earlier steps' results as context):
        "docs" -> QAAgent: the Assistant asks the router itself (its answer may come from the LLM, with passages);
                  if the documents hold nothing relevant, the step goes on as below
        else   -> router.decide(step.task)      (no model call: rules, budget, privacy)
                    non-local route -> LLMAgent (the router escalated the step)
                    local route     -> ToolAgent (the SLM with the tools and ask_llm)
        -> StepResult (agent, text, RoutingDecision, GuardReport, tool runs, citations)
    -> MultiAgentResult (plan, steps, answer = the steps' texts)

The router is used as three views that share its routes, privacy rule, budget, fallbacks and stats (so every call
counts against one budget): the router itself for dispatch decisions and the assistant, the router pinned to the
local route for the planner and the tool agent, and the router pinned to the LLM route for the LLM agent and
``ask_llm``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from langchain_core.runnables import Runnable, RunnableLambda
from langchain_core.tools import BaseTool
from pydantic import BaseModel, Field

from slmkit.agent.multi_agent.agents import Agent, AnswersQuestions, LLMAgent, QAAgent, StepResult, ToolAgent
from slmkit.agent.multi_agent.plan import Plan, Planner, Step
from slmkit.agent.multi_agent.tools import ask_llm_tool
from slmkit.core.config import SlmkitConfig
from slmkit.core.errors import ConfigurationError
from slmkit.guards.base import Guard
from slmkit.routing.chat_model import RoutedChatModel
from slmkit.routing.decision import RoutingDecision
from slmkit.routing.policy import RoutingPolicy
from slmkit.routing.rules import KeepLocalIfPII

if TYPE_CHECKING:
    from slmkit.retrieval import KnowledgeBase

__all__ = ["DelegatedStep", "MultiAgentResult", "Supervisor", "SupervisorConfig", "pinned"]


class SupervisorConfig(SlmkitConfig):
    """Settings of a :class:`Supervisor`."""

    max_steps: int = Field(default=3, ge=1)
    """Most steps a plan may have."""
    max_tool_calls: int = Field(default=1, ge=1)
    """Model calls per tools step that may call a tool (the first must); then the SLM answers from the results."""
    escalate: bool = True
    """Ask the router about each non-docs step and give the LLM agent the steps it sends to a non-local route."""
    descriptions: dict[str, str] = Field(default_factory=dict)
    """Agent name -> what the planner is told it does, replacing the agent's own description. A 135M planner
    picks better with words from your domain, e.g. ``{"docs": "questions about Lumen Grid's handbook"}``."""


class DelegatedStep(StepResult):
    """A step's result, with what the planner asked for and what the router said about it."""

    planned_agent: str
    """The agent the planner named; differs from ``agent`` when the router escalated the step."""
    dispatch: RoutingDecision | None = None
    """The router's decision on the step's task, made before any model call (None for docs steps, whose
    assistant asks the router itself)."""


class MultiAgentResult(BaseModel):
    """The plan, each step's result, and the answer."""

    request: str
    plan: Plan
    steps: list[DelegatedStep]
    answer: str
    """The steps' texts, in order (one step: its text)."""
    timings: dict[str, float] = Field(default_factory=dict)
    """``plan_ms``, ``step_<n>_ms`` and ``total_ms``."""


def pinned(router: RoutedChatModel, route: str) -> RoutedChatModel:
    """``router`` with ``route`` as its only preference; routes, privacy rule, budget and stats are shared.

    Budget, context window and the privacy rule still apply: a pinned LLM whose budget is spent answers locally,
    and the decision says why. A pinned non-local route falls back to the local one when it fails.
    """
    policy = router.policy
    local = _local_route(policy)
    fallbacks = policy.fallbacks
    if fallbacks is None:
        fallbacks = {route: [local]} if route != local else {}
    view = RoutingPolicy(
        routes=policy.routes,
        rules=[r for r in policy.rules if isinstance(r, KeepLocalIfPII)],
        default=route,
        budget=policy.budget,
        fallbacks=fallbacks,
        expected_output_tokens=policy.expected_output_tokens,
    )
    return RoutedChatModel(
        policy=view,
        stats=router.stats,
        temperature=router.temperature,
        max_tokens=router.max_tokens,
        stop=router.stop,
    )


def _local_route(policy: RoutingPolicy) -> str:
    if policy.routes[policy.default_route].local:
        return policy.default_route
    local = next((n for n, r in policy.routes.items() if r.local), None)
    if local is None:
        raise ConfigurationError("The supervisor needs a local route (Route(..., local=True)) for the SLM agents.")
    return local


def _remote_route(policy: RoutingPolicy) -> str | None:
    if not policy.routes[policy.strong_route].local:
        return policy.strong_route
    return next((n for n, r in policy.routes.items() if not r.local), None)


class Supervisor:
    """Plans a request with the local SLM and has agents do the steps; every model call is routed and guarded.

    Example:
        .. code-block:: python

            supervisor = Supervisor(router, knowledge_base=kb, tools=[multiply])
            result = supervisor.run("How many vacation days do I get per year, and what is 28 times 8?")
            [(s.agent, s.routing.route, s.text) for s in result.steps]
    """

    def __init__(
        self,
        router: RoutedChatModel,
        *,
        assistant: AnswersQuestions | None = None,
        knowledge_base: KnowledgeBase | None = None,
        tools: Sequence[BaseTool] = (),
        guards: Sequence[Guard] | None = None,
        local_guards: Sequence[Guard] | None = None,
        config: SupervisorConfig | None = None,
    ) -> None:
        """``assistant``: the docs agent's ``Assistant``; or ``knowledge_base``, to get one over it on ``router``.
        ``guards`` wrap calls that may leave the machine (LLM agent, ``ask_llm``); default: a pseudonymizing
        ``PIIGuard``. ``local_guards`` wrap the SLM's calls (planner, tool agent); default: a ``PIIGuard`` that
        only reports findings, since those calls stay on this machine. The docs agent uses the assistant's guards."""
        self.router = router
        self.config = config or SupervisorConfig()
        if guards is None or local_guards is None:
            from slmkit.guards.pii import PIIGuard

            guards = [PIIGuard()] if guards is None else guards
            local_guards = [PIIGuard(action="keep")] if local_guards is None else local_guards
        self.slm = pinned(router, _local_route(router.policy))
        remote = _remote_route(router.policy)
        self.llm_agent = LLMAgent(pinned(router, remote), guards=guards) if remote is not None else None
        tool_list = [*tools, *([ask_llm_tool(self.llm_agent)] if self.llm_agent is not None else [])]
        self.agents: dict[str, Agent] = {}
        if assistant is not None and knowledge_base is not None:
            raise ConfigurationError("Pass an assistant or a knowledge_base for the docs agent, not both.")
        if knowledge_base is not None:
            from slmkit.agent.assistant import Assistant

            assistant = Assistant(knowledge_base, model=router)
        if assistant is not None:
            self.agents["docs"] = QAAgent(assistant)
        if tool_list:
            self.agents["tools"] = ToolAgent(
                self.slm, tool_list, guards=local_guards, max_tool_calls=self.config.max_tool_calls
            )
        if not self.agents:
            raise ConfigurationError("A Supervisor needs an assistant (docs agent) or tools (tool agent), or both.")
        self.planner = Planner(
            self.slm,
            {name: self.config.descriptions.get(name, agent.description) for name, agent in self.agents.items()},
            guards=local_guards,
            max_steps=self.config.max_steps,
        )

    def run(self, request: str) -> MultiAgentResult:
        """Plan ``request``, run each step with its agent, and collect the results."""
        started = time.perf_counter()
        plan = self.planner.plan(request)
        timings = {"plan_ms": _ms(started)}
        steps: list[DelegatedStep] = []
        for n, step in enumerate(plan.steps, start=1):
            step_started = time.perf_counter()
            steps.append(self._delegate(step, _context(steps)))
            timings[f"step_{n}_ms"] = _ms(step_started)
        timings["total_ms"] = _ms(started)
        answer = "\n\n".join(s.text for s in steps if s.text)
        return MultiAgentResult(request=request, plan=plan, steps=steps, answer=answer, timings=timings)

    def _delegate(self, step: Step, context: str) -> DelegatedStep:
        if step.agent == "docs":
            result = self.agents["docs"].run(step.task, context=context)
            if not result.abstained or "tools" not in self.agents:
                return DelegatedStep(**dict(result), planned_agent=step.agent)
            # The documents say nothing about it: the step was not for the docs agent after all.
        agent, dispatch = self._dispatch(step.task)
        result = agent.run(step.task, context=context)
        return DelegatedStep(**dict(result), planned_agent=step.agent, dispatch=dispatch)

    def _dispatch(self, task: str) -> tuple[Agent, RoutingDecision | None]:
        """The router's decision on a task, without a model call: a non-local route hands it to the LLM agent."""
        if not self.config.escalate or self.llm_agent is None:
            return self.agents["tools"], None
        decision = self.router.decide(task)
        if not self.router.policy.routes[decision.route].local:
            return self.llm_agent, decision
        return self.agents["tools"], decision

    def as_runnable(self) -> Runnable[str, MultiAgentResult]:
        """``run`` as a LangChain Runnable (request string in, ``MultiAgentResult`` out)."""
        return RunnableLambda(self.run, name="Supervisor")


def _context(done: Sequence[StepResult]) -> str:
    return "\n".join(f"{n}. {s.text}" for n, s in enumerate(done, start=1) if s.text)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
