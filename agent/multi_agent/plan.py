"""The supervisor's plan: a request split into steps, each named for the agent that should do it.

A 135M model cannot be trusted to rewrite a request into tasks (it drops the numbers and invents new questions),
but it can pick one word from a short list. So the request is split into parts by its own punctuation and
conjunctions, and the local SLM only chooses an agent per part, as JSON under a grammar that allows nothing but
the agents' names; consecutive parts for the same agent become one step:

    "How many vacation days do I get, and what is 28 times 8?"
      -> parts: ["How many vacation days do I get", "what is 28 times 8?"]
      -> Guarded(local SLM via the router).with_structured_output({"part_1": enum, "part_2": enum})
      -> {"part_1": "docs", "part_2": "tools"} -> Plan(steps=[docs: part 1, tools: part 2])

If the answer does not parse (e.g. cut off by ``max_tokens``), the plan is one step: the whole request for the
first agent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.exceptions import OutputParserException
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import Runnable
from pydantic import BaseModel

from slmkit.core.errors import ConfigurationError
from slmkit.guards.base import Guard
from slmkit.guards.runnable import Guarded

__all__ = ["Plan", "Planner", "Step", "plan_schema", "split_request"]


class Step(BaseModel):
    """One piece of work for one agent."""

    agent: str
    """Name of the agent the planner chose, e.g. ``docs`` or ``tools``."""
    task: str
    """The words of the request this step is about."""


class Plan(BaseModel):
    """The steps, in order, and whether they come from the model or from the one-step fallback."""

    steps: list[Step]
    fallback: bool = False
    """True when the model's answer was unusable and the whole request became one step."""
    reason: str = ""
    """Why the fallback was taken (empty when the model's plan was used)."""


_SENTENCE_END = re.compile(r"(?<=[.?!])\s+(?=\S)")
_JOINER = re.compile(r"\s*(?:;|,\s*(?:and|then)\b)\s*", re.IGNORECASE)
_MIN_WORDS = 3


def split_request(request: str, max_parts: int) -> list[str]:
    """The request's parts: sentences, then clauses joined by ``;``, ``, and`` or ``, then``.

    A part of fewer than three words belongs to the one before it; parts beyond ``max_parts`` join the last.
    """
    parts: list[str] = []
    for sentence in _SENTENCE_END.split(request.strip()):
        for clause in _JOINER.split(sentence):
            clause = clause.strip(" ,")
            if not clause:
                continue
            if parts and len(clause.split()) < _MIN_WORDS:
                parts[-1] = f"{parts[-1]} {clause}"
            else:
                parts.append(clause)
    if len(parts) > max_parts:
        parts = [*parts[: max_parts - 1], " ".join(parts[max_parts - 1 :])]
    return parts


def plan_schema(parts: Sequence[str], agents: Sequence[str]) -> dict[str, Any]:
    """JSON schema of the choice: one key per part, whose value may only be an agent's name."""
    return {
        "title": "Plan",
        "type": "object",
        "properties": {
            f"part_{n}": {"type": "string", "enum": list(agents), "description": f"agent for: {part}"}
            for n, part in enumerate(parts, start=1)
        },
        "required": [f"part_{n}" for n in range(1, len(parts) + 1)],
        "additionalProperties": False,
    }


_PROMPT = """You send each part of a user's request to the agent that can do it. The agents:
{agents}"""


class Planner:
    """Turns a request into a :class:`Plan`: split by the request's own words, an agent per part chosen by the SLM.

    Example:
        .. code-block:: python

            planner = Planner(slm, {"docs": "answers from the company documents", "tools": "multiply numbers"})
            planner.plan("How many vacation days do I get, and what is 28 times 8?").steps
    """

    def __init__(
        self,
        model: Runnable[Any, Any],
        agents: Mapping[str, str],
        *,
        guards: Sequence[Guard] = (),
        max_steps: int = 3,
    ) -> None:
        """``model``: a chat model with ``with_structured_output`` (the router pinned to the local SLM);
        ``agents``: name -> one-line description, in order of preference (the first takes the fallback step)."""
        if not agents:
            raise ConfigurationError("A Planner needs at least one agent to plan for.")
        if max_steps < 1:
            raise ConfigurationError(f"max_steps must be at least 1, not {max_steps}.")
        self.model = model
        self.agents = dict(agents)
        self.guards = list(guards)
        self.max_steps = max_steps
        self._system = _PROMPT.format(agents="\n".join(f"- {name}: {about}" for name, about in self.agents.items()))

    def plan(self, request: str) -> Plan:
        """The steps for ``request``, in the request's order."""
        if not request.strip():
            raise ConfigurationError("The request is empty: say what should be done.")
        parts = split_request(request, self.max_steps)
        if len(self.agents) == 1:
            return Plan(steps=[Step(agent=next(iter(self.agents)), task=request.strip())])
        schema = plan_schema(parts, list(self.agents))
        chooser = Guarded(self.model.with_structured_output(schema), guards=self.guards)  # type: ignore[attr-defined]
        listed = "\n".join(f"part_{n}: {part}" for n, part in enumerate(parts, start=1))
        try:
            raw = chooser.invoke([SystemMessage(self._system), HumanMessage(f"Request: {request}\n\nParts:\n{listed}")])
            chosen = [raw[f"part_{n}"] for n in range(1, len(parts) + 1)]
        except (OutputParserException, KeyError, TypeError) as exc:
            return self._fallback(request, f"the agents' choice did not parse ({type(exc).__name__}: {exc})")
        if not all(agent in self.agents for agent in chosen):
            return self._fallback(request, f"the model named unknown agents: {chosen}")
        steps: list[Step] = []
        for agent, part in zip(chosen, parts, strict=True):
            if steps and steps[-1].agent == agent:  # one step per agent and stretch of the request
                steps[-1] = Step(agent=agent, task=f"{steps[-1].task} {part}")
            else:
                steps.append(Step(agent=agent, task=part))
        if len(steps) == 1:
            steps = [Step(agent=steps[0].agent, task=request.strip())]
        return Plan(steps=steps)

    def _fallback(self, request: str, reason: str) -> Plan:
        first = next(iter(self.agents))
        return Plan(steps=[Step(agent=first, task=request.strip())], fallback=True, reason=reason)
