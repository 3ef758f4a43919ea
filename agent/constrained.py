"""Grammar-constrained output for small models: tool calls and JSON that always parse.

A 135M model cannot be trusted to write valid JSON, but llama.cpp can forbid every token that would break a
grammar. We describe the tools (or the requested schema) in the system prompt so the model knows *what* to say, and
compile a JSON schema into a GBNF grammar so it can only say it in the right *shape*:

    tools -> one JSON schema {"name": const, "arguments": <parameters>} per tool (anyOf) -> GBNF -> sampler

Tool calls use one neutral JSON shape, ``{"name": ..., "arguments": {...}}``, for every chat template, and earlier
calls and tool results are rendered back into the conversation in the same words the model was taught.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.messages import ToolCall
from langchain_core.utils.function_calling import convert_to_openai_tool

from slmkit.core.errors import ConfigurationError, MalformedOutputError

__all__ = [
    "ToolChoice",
    "compile_grammar",
    "json_object_schema",
    "normalize_tool_choice",
    "parse_tool_call",
    "schema_instructions",
    "tool_call_schema",
    "tools_instructions",
]

ToolChoice = Literal["auto", "any", "none"] | str
"""``auto``: the model decides; ``any``: it must call some tool; ``none``: no tools; else a tool name."""

JSON_OBJECT_SCHEMA: dict[str, Any] = {"type": "object"}


def normalize_tool_choice(tool_choice: Any, tool_names: Sequence[str]) -> ToolChoice:
    """Map the spellings LangChain and OpenAI accept onto ``auto``/``any``/``none``/tool name."""
    if tool_choice is None or tool_choice == "auto":
        return "auto"
    if tool_choice is True or tool_choice in ("any", "required"):
        return "any"
    if tool_choice is False or tool_choice == "none":
        return "none"
    if isinstance(tool_choice, dict):
        tool_choice = (tool_choice.get("function") or {}).get("name") or tool_choice.get("name")
    if isinstance(tool_choice, str) and tool_choice in tool_names:
        return tool_choice
    raise ConfigurationError(
        f"tool_choice={tool_choice!r} names no bound tool. Use 'auto', 'any', 'none' or one of: "
        f"{', '.join(tool_names) or '(no tools bound)'}."
    )


def openai_tools(tools: Sequence[Any]) -> list[dict[str, Any]]:
    return [convert_to_openai_tool(t) for t in tools]


def tools_instructions(tools: list[dict[str, Any]], choice: ToolChoice) -> str:
    """System-prompt text that teaches the model the tools and the call format."""
    lines = ["You can call these tools:"]
    for tool in tools:
        fn = tool["function"]
        params = fn.get("parameters", {}).get("properties", {})
        lines.append(f"- {fn['name']}: {fn.get('description', '').strip()} Arguments: {json.dumps(params)}")
    lines.append(
        'To call a tool, reply with only a JSON object: {"name": "<tool name>", "arguments": {<arguments>}}. '
        "Take argument values from the user's request."
    )
    if choice == "auto":
        lines.append("If no tool is needed, answer in plain text.")
    elif choice != "any":
        lines.append(f"Call the tool {choice} now.")
    return "\n".join(lines)


def tool_call_schema(tools: list[dict[str, Any]], choice: ToolChoice) -> dict[str, Any]:
    """JSON schema of one call to any allowed tool: the name is a constant, the arguments its parameter schema."""
    allowed = [t for t in tools if choice in ("any", "auto") or t["function"]["name"] == choice]
    options = []
    for tool in allowed:
        fn = tool["function"]
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        params = {k: v for k, v in params.items() if k not in ("title", "description")}
        options.append(
            {
                "type": "object",
                "properties": {"name": {"const": fn["name"]}, "arguments": params},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    return options[0] if len(options) == 1 else {"anyOf": options}


def parse_tool_call(text: str, tool_names: Sequence[str]) -> ToolCall:
    """Parse the model's JSON into a LangChain ``ToolCall``; raises ``MalformedOutputError`` when it cannot."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedOutputError(
            f"The model's tool call is not valid JSON ({exc.msg}); it was probably cut off by max_tokens. "
            "Raise max_tokens.",
            llm_output=text,
        ) from exc
    if not isinstance(data, dict) or data.get("name") not in tool_names:
        raise MalformedOutputError(f"The model called an unknown tool: {text!r}", llm_output=text)
    args = data.get("arguments") or {}
    if not isinstance(args, dict):
        raise MalformedOutputError(f"Tool arguments are not an object: {text!r}", llm_output=text)
    return ToolCall(name=data["name"], args=args, id=f"call_{uuid.uuid4().hex[:24]}", type="tool_call")


def render_tool_call(call: ToolCall | dict[str, Any]) -> str:
    """An earlier tool call, written back in the format the model was taught."""
    return json.dumps({"name": call["name"], "arguments": call.get("args", {})}, ensure_ascii=False)


def json_object_schema(schema: dict[str, Any] | None) -> dict[str, Any]:
    return schema if schema else JSON_OBJECT_SCHEMA


def schema_instructions(schema: dict[str, Any]) -> str:
    """System-prompt text asking for JSON that matches ``schema`` (the grammar enforces the shape)."""
    props = schema.get("properties")
    if not props:
        return "Reply with only a JSON object."
    fields = {name: (spec.get("description") or spec.get("type") or "value") for name, spec in props.items()}
    return f"Reply with only a JSON object with these keys: {json.dumps(fields, ensure_ascii=False)}."


@functools.lru_cache(maxsize=64)
def _compile(schema_json: str) -> Any:
    from llama_cpp.llama_grammar import LlamaGrammar

    # llama-cpp-python's converter allows one optional space between JSON tokens, so a tiny model cannot
    # wander off into endless newlines inside a constrained answer.
    return LlamaGrammar.from_json_schema(schema_json, verbose=False)


def compile_grammar(schema: dict[str, Any]) -> Any:
    """A llama.cpp grammar for ``schema`` (cached: compiling costs milliseconds, calls repeat)."""
    try:
        return _compile(json.dumps(schema))  # key order matters: properties are generated in order
    except (ValueError, KeyError, NotImplementedError) as exc:
        raise ConfigurationError(f"Cannot turn this JSON schema into a grammar: {exc}") from exc
