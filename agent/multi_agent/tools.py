"""``ask_llm``: the larger LLM as a LangChain tool, so the local SLM can delegate a sub-question.

The tool is an :class:`~slmkit.agent.multi_agent.agents.LLMAgent` behind a tool schema, so the delegated question
takes the same path as any LLM step: guards (PII pseudonymized before it leaves the machine, restored in the answer)
and the router (budget, privacy rule, fallback to the local route). The tool returns the answer as its content and
the whole ``StepResult`` (routing decision, guard report) as its artifact, which the tool agent records.
"""

from __future__ import annotations

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field

from slmkit.agent.multi_agent.agents import LLMAgent, StepResult

__all__ = ["ask_llm_tool"]


class _AskLLMArgs(BaseModel):
    question: str = Field(description="A complete, self-contained question for the larger model.")


def ask_llm_tool(agent: LLMAgent) -> BaseTool:
    """The ``ask_llm`` tool over ``agent``.

    Example:
        .. code-block:: python

            tool = ask_llm_tool(LLMAgent(pinned_llm, guards=[PIIGuard()]))
            tool.invoke({"question": "Explain what a heat pump does in one sentence."})
    """

    def ask_llm(question: str) -> tuple[str, StepResult]:
        result = agent.run(question)
        return result.text, result

    return StructuredTool.from_function(
        ask_llm,
        name="ask_llm",
        description="Ask a larger language model a question you cannot answer yourself.",
        args_schema=_AskLLMArgs,
        response_format="content_and_artifact",
    )
