"""The supervisor, its planner, agents and ``ask_llm`` with scripted models: no llama.cpp, no Presidio, no server."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace
from typing import Any

import pytest
from langchain_core.exceptions import ModelConnectionError, OutputParserException
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from pydantic import Field

from slmkit.agent.multi_agent import (
    LLMAgent,
    Planner,
    QAAgent,
    Supervisor,
    SupervisorConfig,
    ToolAgent,
    ask_llm_tool,
    pinned,
)
from slmkit.agent.multi_agent.plan import plan_schema, split_request
from slmkit.core.errors import ConfigurationError, SlmkitError
from slmkit.guards import Guard, GuardCall, GuardReport
from slmkit.routing import Budget, KeepLocalIfPII, Keywords, Route, RoutedChatModel, RoutingPolicy

SECRETS = ("Dana Whitfield", "dana@lumen.example")


class Scripted(BaseChatModel):
    """Answers from a script (messages, dicts for structured output, or exceptions); records what it was sent."""

    script: list[Any] = Field(default_factory=list)
    seen: list[list[BaseMessage]] = Field(default_factory=list)
    seen_kwargs: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _next(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> Any:
        self.seen.append(list(messages))
        self.seen_kwargs.append(kwargs)
        item = self.script.pop(0) if self.script else "ok"
        if isinstance(item, BaseException):
            raise item
        return item

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any):
        item = self._next(messages, kwargs)
        message = item if isinstance(item, AIMessage) else AIMessage(content=item)
        if message.usage_metadata is None:
            usage = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
            message = message.model_copy(update={"usage_metadata": usage})
        return ChatResult(generations=[ChatGeneration(message=message)])

    def bind_tools(self, tools: Any, *, tool_choice: Any = None, **kwargs: Any):
        return self.bind(tools=tools, tool_choice=tool_choice, **kwargs)

    def with_structured_output(self, schema: Any, *, include_raw: bool = False, **kwargs: Any):
        def run(messages: Any) -> dict[str, Any]:
            item = self._next(list(messages), {"schema": schema})
            if isinstance(item, OutputParserException):
                return {"raw": AIMessage("{"), "parsed": None, "parsing_error": item}
            return {"raw": AIMessage(json.dumps(item)), "parsed": item, "parsing_error": None}

        return RunnableLambda(run)


class NamePseudonymizer(Guard):
    """A PII guard stand-in: pseudonymizes two known values, restores them in answers."""

    name = "pii"

    def check_input(self, text: str, call: GuardCall) -> str:
        for value in SECRETS:
            if value in text:
                text = text.replace(value, call.vault.placeholder("PERSON", value))
        return text

    def check_output(self, text: str, call: GuardCall) -> str:
        return call.vault.restore(text)

    def stream_output(self, call: GuardCall):
        return call.vault.restorer()


class RegexPII:
    """The router's detector stand-in (for KeepLocalIfPII): the same two values."""

    def detect(self, text: str) -> list[SimpleNamespace]:
        pattern = "|".join(re.escape(s) for s in SECRETS)
        return [
            SimpleNamespace(start=m.start(), end=m.end(), entity_type="PERSON", score=1.0)
            for m in re.finditer(pattern, text)
        ]


def texts(model: Scripted) -> str:
    return " ".join(m.text for call in model.seen for m in call)


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def broken(x: str) -> str:
    """Always fails."""
    raise ValueError("the service is down")


def call(name: str, **args: Any) -> AIMessage:
    return AIMessage("", tool_calls=[{"name": name, "args": args, "id": f"call_{name}", "type": "tool_call"}])


def router(slm: Scripted, llm: Scripted | None = None, *, rules: list[Any] | None = None, **kwargs: Any):
    routes = {"slm": Route(model=slm, local=True, context_window=8000)}
    if llm is not None:
        routes["llm"] = Route(model=llm, input_usd_per_1k=1.0, output_usd_per_1k=2.0, context_window=8000)
    policy = RoutingPolicy(routes=routes, rules=[KeepLocalIfPII(detector=RegexPII()), *(rules or [])], **kwargs)
    return RoutedChatModel(policy=policy)


class FakeAssistant:
    def __init__(self, abstain: bool = False) -> None:
        self.questions: list[str] = []
        self.abstain = abstain

    def ask(self, question: str) -> Any:
        self.questions.append(question)
        return SimpleNamespace(
            text="I found nothing about this in the documents." if self.abstain else "28 days [1].",
            citations=[] if self.abstain else [{"marker": 1, "source": "handbook.md"}],
            routing=None,
            guard_report=GuardReport(),
            abstained=self.abstain,
        )


# -- planner -------------------------------------------------------------------------------------------------
AGENTS = {"docs": "answers from documents", "tools": "uses tools"}


@pytest.mark.parametrize(
    ("request_text", "parts"),
    [
        ("What is 2 + 3?", ["What is 2 + 3?"]),
        ("How many vacation days do I get, and what is 2 + 3?", ["How many vacation days do I get", "what is 2 + 3?"]),
        ("What does E17 mean? Then multiply 13.5 by 2.", ["What does E17 mean?", "Then multiply 13.5 by 2."]),
        ("Check the warranty; then email Dana.", ["Check the warranty", "then email Dana."]),
        ("Hi. Thanks. What is 2 + 3?", ["Hi. Thanks.", "What is 2 + 3?"]),  # short parts join the one before
        ("Dana and Tom asked about vacation days.", ["Dana and Tom asked about vacation days."]),
        ("One two three. Four five six. Seven eight nine. Ten eleven twelve.", None),
    ],
)
def test_requests_are_split_by_their_own_punctuation_and_conjunctions(request_text, parts):
    got = split_request(request_text, max_parts=3)
    if parts is None:  # more parts than max_parts: the tail joins the last
        assert got == ["One two three.", "Four five six.", "Seven eight nine. Ten eleven twelve."]
    else:
        assert got == parts


def test_plan_schema_has_one_key_per_part_that_only_takes_an_agents_name():
    schema = plan_schema(["vacation days?", "2 + 3"], ["docs", "tools"])
    assert schema["required"] == ["part_1", "part_2"]
    assert schema["properties"]["part_1"]["enum"] == ["docs", "tools"]
    assert schema["properties"]["part_2"]["description"] == "agent for: 2 + 3"
    assert schema["additionalProperties"] is False


def test_planner_gives_each_part_the_agent_the_model_chose():
    slm = Scripted(script=[{"part_1": "docs", "part_2": "tools"}])
    plan = Planner(pinned(router(slm), "slm"), AGENTS).plan("How many vacation days do I get, and what is 2 + 3?")
    assert [(s.agent, s.task) for s in plan.steps] == [
        ("docs", "How many vacation days do I get"),
        ("tools", "what is 2 + 3?"),
    ]
    assert not plan.fallback
    assert "- docs: answers from documents" in slm.seen[0][0].text
    assert "part_2: what is 2 + 3?" in slm.seen[0][1].text
    assert slm.seen_kwargs[0]["schema"]["properties"]["part_1"]["enum"] == ["docs", "tools"]


def test_consecutive_parts_for_one_agent_become_one_step():
    slm = Scripted(script=[{"part_1": "docs", "part_2": "docs", "part_3": "tools"}])
    plan = Planner(pinned(router(slm), "slm"), AGENTS).plan("Who is the HR lead? What is E17? Multiply 3 by 4.")
    assert [(s.agent, s.task) for s in plan.steps] == [
        ("docs", "Who is the HR lead? What is E17?"),
        ("tools", "Multiply 3 by 4."),
    ]


def test_a_one_step_plan_keeps_the_whole_request():
    slm = Scripted(script=[{"part_1": "tools", "part_2": "tools"}])
    plan = Planner(pinned(router(slm), "slm"), AGENTS).plan("Add 2 and 3, then double it.")
    assert [(s.agent, s.task) for s in plan.steps] == [("tools", "Add 2 and 3, then double it.")]


def test_with_one_agent_there_is_nothing_to_choose_and_no_model_call():
    slm = Scripted()
    plan = Planner(pinned(router(slm), "slm"), {"tools": "uses tools"}).plan("What is 2 + 3? And 4 + 5?")
    assert [(s.agent, s.task) for s in plan.steps] == [("tools", "What is 2 + 3? And 4 + 5?")]
    assert slm.seen == []


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (OutputParserException("cut off"), "did not parse"),
        ({"part_2": "docs"}, "did not parse"),
        ({"part_1": "nobody"}, "unknown agents"),
    ],
)
def test_an_unusable_answer_falls_back_to_one_step_for_the_first_agent(reply, reason):
    plan = Planner(pinned(router(Scripted(script=[reply])), "slm"), AGENTS).plan("Tell me about vacation.")
    assert plan.fallback
    assert reason in plan.reason
    assert [(s.agent, s.task) for s in plan.steps] == [("docs", "Tell me about vacation.")]


def test_plans_have_at_most_max_steps():
    slm = Scripted(script=[{"part_1": "docs", "part_2": "tools"}])
    plan = Planner(pinned(router(slm), "slm"), AGENTS, max_steps=2).plan("Aa bb cc. Dd ee ff. Gg hh ii.")
    assert [(s.agent, s.task) for s in plan.steps] == [("docs", "Aa bb cc."), ("tools", "Dd ee ff. Gg hh ii.")]


def test_planner_rejects_bad_settings_and_empty_requests():
    model = pinned(router(Scripted()), "slm")
    with pytest.raises(ConfigurationError, match="at least one agent"):
        Planner(model, {})
    with pytest.raises(ConfigurationError, match="max_steps"):
        Planner(model, AGENTS, max_steps=0)
    with pytest.raises(ConfigurationError, match="empty"):
        Planner(model, AGENTS).plan("  ")


# -- tool agent ----------------------------------------------------------------------------------------------
def test_tool_agent_forces_a_tool_call_runs_it_and_answers_from_the_result():
    slm = Scripted(script=[call("add", a=2, b=3), "2 + 3 = 5."])
    result = ToolAgent(pinned(router(slm), "slm"), [add]).run("What is 2 + 3?")
    assert result.text == "2 + 3 = 5."
    assert [(r.name, r.args, r.output, r.error) for r in result.tool_runs] == [("add", {"a": 2, "b": 3}, "5", False)]
    assert slm.seen_kwargs[0]["tool_choice"] == "any"
    assert "tools" not in slm.seen_kwargs[1]  # one tool call by default, then an answer
    assert isinstance(slm.seen[0][-1], HumanMessage)
    final = slm.seen[1]
    assert [m.type for m in final] == ["system", "human"]  # the results as text, not the call transcript
    assert final[1].text == "- add(a=2, b=3) -> 5\n\nUsing the results above, answer: What is 2 + 3?"
    assert result.routing is not None
    assert result.routing.route == "slm"


def test_tool_agent_answers_without_tools_after_max_tool_calls():
    slm = Scripted(script=[call("add", a=1, b=1), call("add", a=2, b=2), "Done: 2 and 4."])
    result = ToolAgent(pinned(router(slm), "slm"), [add], max_tool_calls=2).run("Add things.")
    assert [r.output for r in result.tool_runs] == ["2", "4"]
    assert result.text == "Done: 2 and 4."
    assert [k.get("tool_choice") for k in slm.seen_kwargs] == ["any", "auto", None]


def test_tool_agent_may_answer_instead_of_calling_again():
    slm = Scripted(script=[call("add", a=1, b=1), "It is 2."])
    result = ToolAgent(pinned(router(slm), "slm"), [add], max_tool_calls=3).run("Add 1 and 1.")
    assert result.text == "It is 2."
    assert len(slm.seen) == 2


def test_a_failing_tool_is_reported_to_the_model_and_in_the_result():
    slm = Scripted(script=[call("broken", x="a"), "The service is down."])
    result = ToolAgent(pinned(router(slm), "slm"), [broken]).run("Try it.")
    assert result.tool_runs[0].error
    assert "the service is down" in result.tool_runs[0].output
    assert "- broken(x='a') -> ValueError: the service is down" in slm.seen[1][-1].text


def test_tool_agent_rejects_bad_settings():
    with pytest.raises(ConfigurationError, match="at least one tool"):
        ToolAgent(Scripted(), [])
    with pytest.raises(ConfigurationError, match="max_tool_calls"):
        ToolAgent(Scripted(), [add], max_tool_calls=0)


# -- ask_llm: the LLM as a tool, through budget and guards ---------------------------------------------------
def test_ask_llm_pseudonymizes_before_the_remote_and_restores_the_answer():
    llm = Scripted(script=["Dear <PERSON_1>, your email <PERSON_2> is on file."])
    routed = router(Scripted(), llm)
    ask = ask_llm_tool(LLMAgent(pinned(routed, "llm"), guards=[NamePseudonymizer()]))
    message = ask.invoke(
        {
            "name": "ask_llm",
            "args": {"question": "Greet Dana Whitfield and confirm dana@lumen.example."},
            "id": "c1",
            "type": "tool_call",
        }
    )
    assert message.text == "Dear Dana Whitfield, your email dana@lumen.example is on file."
    sent = texts(llm)
    assert not any(secret in sent for secret in SECRETS)
    assert "<PERSON_1>" in sent
    result = message.artifact
    assert result.routing.route == "llm"
    assert isinstance(result.guard_report, GuardReport)
    assert routed.stats.report().routes["llm"].answers == 1


def test_ask_llm_keeps_private_data_local_when_no_guard_pseudonymizes_it():
    """Without the guard, the router's privacy rule still keeps the request off the remote route."""
    slm, llm = Scripted(script=["local answer"]), Scripted()
    ask = ask_llm_tool(LLMAgent(pinned(router(slm, llm), "llm"), guards=[]))
    assert ask.invoke({"question": "Who is Dana Whitfield?"}) == "local answer"
    assert llm.seen == []


def test_ask_llm_answers_locally_once_the_budget_is_spent():
    pricey = AIMessage("remote", usage_metadata={"input_tokens": 1000, "output_tokens": 1000, "total_tokens": 2000})
    slm, llm = Scripted(script=["local"]), Scripted(script=[pricey])
    routed = router(slm, llm, budget=Budget(usd_per_day=2.0))  # the first answer costs $3
    agent = LLMAgent(pinned(routed, "llm"))
    first = agent.run("Explain heat pumps.")
    second = agent.run("Explain heat pumps again.")
    assert (first.routing.route, first.text) == ("llm", "remote")
    assert (second.routing.route, second.text) == ("slm", "local")
    assert second.routing.signal("budget").fired


def test_pinned_llm_falls_back_to_the_local_route_when_the_remote_fails():
    slm, llm = Scripted(script=["local"]), Scripted(script=[ModelConnectionError("refused")])
    result = LLMAgent(pinned(router(slm, llm), "llm")).run("Explain heat pumps.")
    assert result.text == "local"
    assert [(a.route, a.ok) for a in result.routing.attempts] == [("llm", False), ("slm", True)]


def test_pinned_views_share_the_routers_stats():
    slm = Scripted(script=["a"])
    routed = router(slm, Scripted())
    view = pinned(routed, "slm")
    view.invoke("hi")
    assert view.stats is routed.stats
    assert routed.stats.report().requests == 1


# -- supervisor ----------------------------------------------------------------------------------------------
def test_supervisor_delegates_each_step_and_reports_agent_routing_and_guards():
    slm = Scripted(
        script=[
            {"part_1": "docs", "part_2": "tools"},
            call("add", a=2, b=3),
            "5",
        ]
    )
    assistant = FakeAssistant()
    supervisor = Supervisor(
        router(slm, Scripted()), assistant=assistant, tools=[add], guards=[NamePseudonymizer()], local_guards=[]
    )
    result = supervisor.run("How many vacation days do I get, and what is 2 + 3?")
    assert [(s.planned_agent, s.agent) for s in result.steps] == [("docs", "docs"), ("tools", "tools")]
    assert assistant.questions == ["How many vacation days do I get"]
    assert result.steps[0].dispatch is None  # the assistant asks the router itself
    assert result.steps[0].citations == [{"marker": 1, "source": "handbook.md"}]
    tools_step = result.steps[1]
    assert tools_step.routing.route == "slm"
    assert tools_step.dispatch.route == "slm"
    assert tools_step.guard_report is not None
    assert "1. 28 days [1]." in slm.seen[1][1].text  # earlier results go to later steps' tool calls
    assert result.answer == "28 days [1].\n\n5"
    assert set(result.timings) == {"plan_ms", "step_1_ms", "step_2_ms", "total_ms"}


def test_steps_the_router_escalates_go_to_the_llm_agent():
    slm = Scripted()
    llm = Scripted(script=["7 has no divisors but 1 and 7."])
    supervisor = Supervisor(
        router(slm, llm, rules=[Keywords(words=["prove"], route="llm")]), tools=[add], guards=[], local_guards=[]
    )
    step = supervisor.run("Prove that 7 is prime.").steps[0]
    assert (step.planned_agent, step.agent) == ("tools", "llm")
    assert step.dispatch.rule == "Keywords"
    assert step.routing.route == "llm"
    assert step.text == "7 has no divisors but 1 and 7."


def test_without_escalation_the_planners_agent_keeps_the_step():
    slm = Scripted(script=[call("add", a=1, b=2), "3"])
    supervisor = Supervisor(
        router(slm, Scripted(), rules=[Keywords(words=["prove"], route="llm")]),
        tools=[add],
        guards=[],
        local_guards=[],
        config=SupervisorConfig(escalate=False),
    )
    step = supervisor.run("Prove 1 + 2 = 3.").steps[0]
    assert (step.agent, step.dispatch, step.text) == ("tools", None, "3")


def test_the_slm_can_delegate_to_the_llm_through_ask_llm():
    slm = Scripted(
        script=[
            call("ask_llm", question="Write a haiku for Dana Whitfield."),
            "Here it is.",
        ]
    )
    llm = Scripted(script=["Spring light for <PERSON_1>"])
    supervisor = Supervisor(router(slm, llm), tools=[add], guards=[NamePseudonymizer()], local_guards=[])
    step = supervisor.run("Write a haiku for Dana Whitfield.").steps[0]
    run = step.tool_runs[0]
    assert (run.name, run.output) == ("ask_llm", "Spring light for Dana Whitfield")
    assert run.routing.route == "llm"
    assert "Dana Whitfield" not in texts(llm)


def test_without_a_remote_route_there_is_no_ask_llm_and_no_llm_agent():
    supervisor = Supervisor(router(Scripted()), tools=[add], guards=[], local_guards=[])
    assert supervisor.llm_agent is None
    assert list(supervisor.agents) == ["tools"]
    assert list(supervisor.agents["tools"].tools) == ["add"]


def test_docs_only_supervisor_has_no_tool_agent_but_ask_llm_makes_one():
    with_llm = Supervisor(router(Scripted(), Scripted()), assistant=FakeAssistant(), guards=[], local_guards=[])
    assert list(with_llm.agents) == ["docs", "tools"]
    assert list(with_llm.agents["tools"].tools) == ["ask_llm"]
    local_only = Supervisor(router(Scripted()), assistant=FakeAssistant(), guards=[], local_guards=[])
    assert list(local_only.agents) == ["docs"]


def test_supervisor_configuration_errors_say_what_to_do():
    with pytest.raises(ConfigurationError, match=r"assistant .* or tools"):
        Supervisor(router(Scripted()), guards=[], local_guards=[])
    remote_only = RoutedChatModel(policy=RoutingPolicy(routes={"llm": Route(model=Scripted())}))
    with pytest.raises(ConfigurationError, match="local route"):
        Supervisor(remote_only, tools=[add], guards=[], local_guards=[])
    assert issubclass(ConfigurationError, SlmkitError)


def test_qa_agent_passes_the_task_alone_and_keeps_citations():
    assistant = FakeAssistant()
    result = QAAgent(assistant).run("How many vacation days?", context="1. something else")
    assert assistant.questions == ["How many vacation days?"]
    assert (result.agent, result.text, result.abstained) == ("docs", "28 days [1].", False)


def test_supervisor_is_a_runnable():
    slm = Scripted(script=[call("add", a=1, b=2), "3"])
    supervisor = Supervisor(router(slm), tools=[add], guards=[], local_guards=[])
    assert supervisor.as_runnable().invoke("What is 1 + 2?").answer == "3"


def test_messages_fed_to_the_llm_agent_carry_the_task():
    llm = Scripted(script=["ok"])
    LLMAgent(pinned(router(Scripted(), llm), "llm")).run("Summarise.", context="1. A result.")
    last = llm.seen[0][-1]
    assert isinstance(last, HumanMessage)
    assert last.text.startswith("Summarise.")
    assert "1. A result." in last.text


def test_a_private_step_the_router_keeps_local_stays_with_the_planned_agent():
    slm = Scripted(script=[call("add", a=1, b=2), "3"])
    llm = Scripted()
    supervisor = Supervisor(
        router(slm, llm, rules=[Keywords(words=["prove"], route="llm")]), tools=[add], guards=[], local_guards=[]
    )
    step = supervisor.run("Prove to Dana Whitfield that 1 + 2 = 3.").steps[0]
    assert step.agent == "tools"
    assert step.dispatch.route == "slm"
    assert "private data" in step.dispatch.reason
    assert llm.seen == []


def test_configured_descriptions_are_what_the_planner_tells_the_model():
    slm = Scripted(script=[{"part_1": "docs", "part_2": "tools"}, call("add", a=1, b=1), "2"])
    config = SupervisorConfig(descriptions={"docs": "questions about Lumen Grid's handbook"})
    supervisor = Supervisor(
        router(slm), assistant=FakeAssistant(), tools=[add], guards=[], local_guards=[], config=config
    )
    supervisor.run("How many vacation days do I get, and what is 1 + 1?")
    system = slm.seen[0][0].text
    assert "- docs: questions about Lumen Grid's handbook" in system
    assert "- tools: tasks for its tools: add (Add two integers)" in system


def test_an_assistant_and_a_knowledge_base_are_one_too_many():
    with pytest.raises(ConfigurationError, match="not both"):
        Supervisor(router(Scripted()), assistant=FakeAssistant(), knowledge_base=object(), guards=[], local_guards=[])


def test_every_multi_agent_export_resolves():
    import slmkit.agent.multi_agent as package

    for name in package.__all__:
        assert getattr(package, name) is not None


def test_a_docs_step_the_documents_say_nothing_about_goes_where_the_router_says():
    llm = Scripted(script=["Welcome aboard!"])
    supervisor = Supervisor(
        router(Scripted(), llm, rules=[Keywords(words=["draft"], route="llm")]),
        assistant=FakeAssistant(abstain=True),
        guards=[],
        local_guards=[],
    )
    supervisor.planner = Planner(supervisor.slm, {"docs": "documents"})  # the planner picks docs
    step = supervisor.run("Draft a welcome note for the new colleague.").steps[0]
    assert (step.planned_agent, step.agent, step.text) == ("docs", "llm", "Welcome aboard!")
    assert step.dispatch.rule == "Keywords"


def test_an_abstaining_docs_agent_keeps_the_step_when_no_other_agent_exists():
    supervisor = Supervisor(router(Scripted()), assistant=FakeAssistant(abstain=True), guards=[], local_guards=[])
    step = supervisor.run("Draft a welcome note.").steps[0]
    assert (step.agent, step.abstained) == ("docs", True)


def test_a_tool_result_is_fed_back_to_the_model_as_a_tool_message():
    slm = Scripted(script=[call("add", a=2, b=3), "It is 5."])
    ToolAgent(pinned(router(slm), "slm"), [add], max_tool_calls=2).run("What is 2 + 3?")
    fed_back = slm.seen[1][-1]
    assert isinstance(fed_back, ToolMessage)
    assert (fed_back.text, fed_back.tool_call_id) == ("5", "call_add")
