"""Tool-call and JSON-schema plumbing, table-driven, without a model."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool

from slmkit.agent.chat_local import _plan, _response_schema, _to_chat_dicts
from slmkit.agent.constrained import (
    normalize_tool_choice,
    openai_tools,
    parse_tool_call,
    tool_call_schema,
    tools_instructions,
)
from slmkit.agent.llama_runtime import _first_stop, _stop_prefix_len
from slmkit.core.errors import ConfigurationError, MalformedOutputError


@tool
def get_weather(city: str) -> str:
    """Weather in a city."""
    return "sunny"


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


TOOLS = openai_tools([get_weather, add])
NAMES = ["get_weather", "add"]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, "auto"),
        ("auto", "auto"),
        ("any", "any"),
        ("required", "any"),
        (True, "any"),
        ("none", "none"),
        (False, "none"),
        ("add", "add"),
        ({"type": "function", "function": {"name": "get_weather"}}, "get_weather"),
    ],
)
def test_tool_choice_spellings(given, expected):
    assert normalize_tool_choice(given, NAMES) == expected


def test_unknown_tool_choice_names_the_tools():
    with pytest.raises(ConfigurationError, match="get_weather, add"):
        normalize_tool_choice("delete_everything", NAMES)


def test_schema_for_one_forced_tool_fixes_its_name():
    schema = tool_call_schema(TOOLS, "add")
    assert schema["properties"]["name"] == {"const": "add"}
    assert set(schema["properties"]["arguments"]["properties"]) == {"a", "b"}
    assert schema["required"] == ["name", "arguments"]


def test_schema_for_any_tool_offers_each():
    schema = tool_call_schema(TOOLS, "any")
    assert [o["properties"]["name"]["const"] for o in schema["anyOf"]] == NAMES


@pytest.mark.parametrize(
    ("text", "name", "args"),
    [
        ('{"name": "add", "arguments": {"a": 1, "b": 2}}', "add", {"a": 1, "b": 2}),
        ('{"name": "get_weather", "arguments": {"city": "Oslo"}}', "get_weather", {"city": "Oslo"}),
        ('{"name": "add", "arguments": {}}', "add", {}),
    ],
)
def test_parse_tool_call(text, name, args):
    call = parse_tool_call(text, NAMES)
    assert (call["name"], call["args"], call["type"]) == (name, args, "tool_call")
    assert call["id"].startswith("call_")


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "add", "arguments": {"a": 1',
        '{"name": "rm", "arguments": {}}',
        '{"name": "add", "arguments": [1]}',
    ],
)
def test_malformed_tool_calls_raise_output_parser_errors(text):
    from langchain_core.exceptions import OutputParserException

    with pytest.raises(MalformedOutputError) as info:
        parse_tool_call(text, NAMES)
    assert isinstance(info.value, OutputParserException)


def test_instructions_name_every_tool_and_the_format():
    text = tools_instructions(TOOLS, "auto")
    assert "get_weather" in text
    assert "add" in text
    assert '"arguments"' in text
    assert "plain text" in text


@pytest.mark.parametrize(
    ("text", "stops", "cut"),
    [("hello you there", ["you"], 6), ("no stop here", ["xyz"], None), ("a.b", [".", "b"], 1)],
)
def test_first_stop(text, stops, cut):
    assert _first_stop(text, stops) == cut


@pytest.mark.parametrize(
    ("text", "stops", "held"),
    [("hello yo", ["you"], 2), ("hello y", ["you"], 1), ("hello", ["you"], 0), ("ab", ["abc", "bcd"], 2)],
)
def test_text_that_may_start_a_stop_is_held_back(text, stops, held):
    assert _stop_prefix_len(text, stops) == held


def test_tool_turns_become_plain_turns_any_template_accepts():
    messages = [
        SystemMessage("Be brief."),
        HumanMessage("add 1 and 2"),
        AIMessage("", tool_calls=[{"name": "add", "args": {"a": 1, "b": 2}, "id": "c1"}]),
        ToolMessage("3", tool_call_id="c1", name="add"),
    ]
    out = _to_chat_dicts(messages, "TOOLS HERE")
    assert out[0] == {"role": "system", "content": "Be brief.\n\nTOOLS HERE"}
    assert out[2] == {"role": "assistant", "content": '{"name": "add", "arguments": {"a": 1, "b": 2}}'}
    assert out[3] == {"role": "user", "content": "Result of tool add: 3"}


def test_consecutive_user_turns_are_merged():
    out = _to_chat_dicts([HumanMessage("a"), HumanMessage("b")], "")
    assert out == [{"role": "user", "content": "a\n\nb"}]


def test_images_are_refused_with_a_clear_message():
    msg = HumanMessage(content=[{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "x"}}])
    with pytest.raises(ValueError, match="text only"):
        _to_chat_dicts([msg], "")


def test_plan_forces_grammar_only_when_a_tool_is_required():
    assert _plan([HumanMessage("x")], tools=TOOLS, tool_choice="auto").forced_tool_schema is None
    assert _plan([HumanMessage("x")], tools=TOOLS, tool_choice="any").forced_tool_schema is not None
    assert _plan([HumanMessage("x")], tools=TOOLS, tool_choice="none").tool_names == []


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ({"type": "json_object"}, {"type": "object"}),
        (
            {"type": "json_schema", "schema": {"type": "object", "properties": {"a": {}}}},
            {"type": "object", "properties": {"a": {}}},
        ),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array"}}},
            {"type": "array"},
        ),
    ],
)
def test_response_format_shapes(fmt, expected):
    assert _response_schema(fmt) == expected


def test_bad_response_format_is_rejected():
    with pytest.raises(ValueError, match="json_schema"):
        _response_schema({"type": "xml"})
