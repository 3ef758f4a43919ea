"""``ChatLocalSLM``: a local GGUF model (llama.cpp) as a LangChain chat model.

Construction only validates settings; the GGUF is resolved (catalogue id or path), verified and loaded on the first
call, and shared by every instance with the same runtime settings (see ``llama_runtime``). A call goes:

    messages -> (tool / schema instructions added to the system prompt) -> chat template -> prompt tokens
    -> LocalModel.generate (grammar when output must be a tool call or JSON) -> AIMessage / AIMessageChunks
       with usage_metadata (cache hits as ``cache_read``) and response_metadata (model, finish reason,
       confidence from token log-probabilities, timings)

Example:
    .. code-block:: python

        from slmkit.agent import ChatLocalSLM

        llm = ChatLocalSLM()                                   # packaged SmolLM2-135M
        llm.invoke("Name a colour.").content
        llm.bind_tools([get_weather]).invoke("Weather in Oslo?").tool_calls
        llm.with_structured_output(Person).invoke("Ada Lovelace, born 1815")
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any, Literal

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.output_parsers.openai_tools import JsonOutputKeyToolsParser, PydanticToolsParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import Field, model_validator

from slmkit.agent.catalogue import DEFAULT_MODEL
from slmkit.agent.constrained import (
    compile_grammar,
    json_object_schema,
    normalize_tool_choice,
    openai_tools,
    parse_tool_call,
    render_tool_call,
    schema_instructions,
    tool_call_schema,
    tools_instructions,
)
from slmkit.agent.llama_runtime import (
    DEFAULT_PROMPT_LOOKUP,
    Completion,
    LocalModel,
    RuntimeSettings,
    SamplingParams,
    TextDelta,
    acquire,
    check_kv_cache,
    default_threads,
)
from slmkit.core.tokens import GGUFTokenCounter

__all__ = ["ChatLocalSLM"]


class ChatLocalSLM(BaseChatModel):
    """A small language model running in-process with llama.cpp.

    Example:
        .. code-block:: python

            llm = ChatLocalSLM(model="qwen2.5-coder-0.5b-instruct", temperature=0, max_tokens=256)
            msg = llm.invoke("What is 2 + 2?")
            msg.response_metadata["confidence"]["min_prob"]
    """

    model: str = DEFAULT_MODEL
    """Catalogue id (``slmkit models list``) or path to a ``.gguf`` file."""
    n_ctx: int = Field(default=4096, ge=64)
    """Context window in tokens (prompt + answer); longer prompts raise ``ContextOverflowError``."""
    n_threads: int | None = Field(default=None, ge=1)
    """CPU threads for llama.cpp; None uses every core this process may use (decided at load time)."""
    n_batch: int = Field(default=512, ge=1)
    """Prompt tokens evaluated per llama.cpp batch."""
    flash_attn: bool = False
    """llama.cpp's fused attention kernel (needed, with ``kv_cache="q8_0"``, for ``prompt_lookup``)."""
    kv_cache: Literal["f16", "q8_0"] = "f16"
    """Type of the KV cache: ``q8_0`` takes half the memory (and needs ``flash_attn``)."""
    temperature: float = Field(default=0.2, ge=0.0)
    """Sampling temperature; 0 is greedy decoding."""
    max_tokens: int | None = Field(default=512, ge=1)
    """Upper bound on generated tokens (None: until the context window is full)."""
    top_p: float = Field(default=0.9, gt=0.0, le=1.0)
    top_k: int = Field(default=40, ge=0)
    min_p: float = Field(default=0.05, ge=0.0, le=1.0)
    repeat_penalty: float = Field(default=1.1, gt=0.0)
    """Penalty on recently generated tokens; small models loop without it."""
    seed: int | None = None
    """Random seed for sampling; None draws a fresh one per call."""
    stop: list[str] | None = None
    """Stop sequences (excluded from the output)."""
    streaming: bool = False
    """Make ``invoke`` stream internally (callbacks see tokens as they come)."""
    prompt_lookup: int | None = Field(default=DEFAULT_PROMPT_LOOKUP, ge=0)
    """Prompt-lookup decoding: tokens drafted from the prompt per step and verified in one batch (greedy,
    grammar-free calls; the text is the same as without it). Needs ``flash_attn=True, kv_cache="q8_0"``, the
    settings under which llama.cpp computes a batch exactly as single tokens; 0/None: off. Off by default: on
    the QA benchmark's answers it decoded 0.72x-0.95x (SmolLM2) / 0.93x (Qwen-0.5B) as fast as plain decoding:
    a verified row costs nearly a decode step on a CPU, and the answers are short (``benchmarks/RESULTS.md``)."""
    logprobs: bool = False
    """Also return per-token log-probabilities in ``response_metadata['logprobs']``."""
    show_progress: bool = False
    """Show a progress bar while a chunked catalogue model is assembled on first use."""

    @model_validator(mode="after")
    def _quantized_cache_needs_flash_attn(self) -> ChatLocalSLM:
        check_kv_cache(self.kv_cache, self.flash_attn)  # at construction, not first at load time
        return self

    # -- LangChain plumbing ------------------------------------------------------------------------------------
    @classmethod
    def is_lc_serializable(cls) -> bool:
        return True

    @classmethod
    def get_lc_namespace(cls) -> list[str]:
        return ["slmkit", "agent", "chat_local"]

    @property
    def _llm_type(self) -> str:
        return "slmkit-local-slm"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "n_ctx": self.n_ctx, **self._sampling().model_dump(exclude={"stop"})}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="llamacpp",
            ls_model_name=kwargs.get("model", self.model),
            ls_model_type="chat",
            ls_temperature=kwargs.get("temperature", self.temperature),
        )
        if (max_tokens := kwargs.get("max_tokens", self.max_tokens)) is not None:
            params["ls_max_tokens"] = max_tokens
        if stop_list := stop or kwargs.get("stop") or self.stop:
            params["ls_stop"] = stop_list
        return params

    # -- the model -------------------------------------------------------------------------------------------
    def _settings(self, model: str | None = None) -> RuntimeSettings:
        return RuntimeSettings(
            model=model or self.model,
            n_ctx=self.n_ctx,
            n_threads=self.n_threads or default_threads(),
            n_batch=self.n_batch,
            flash_attn=self.flash_attn,
            kv_cache=self.kv_cache,
        )

    def load(self, model: str | None = None) -> LocalModel:
        """Load (or reuse) the GGUF now, e.g. to keep the first request fast."""
        return acquire(self._settings(model), show_progress=self.show_progress)

    def _sampling(self, stop: list[str] | None = None, **kwargs: Any) -> SamplingParams:
        return SamplingParams(
            temperature=kwargs.get("temperature", self.temperature),
            top_p=kwargs.get("top_p", self.top_p),
            top_k=kwargs.get("top_k", self.top_k),
            min_p=kwargs.get("min_p", self.min_p),
            repeat_penalty=kwargs.get("repeat_penalty", self.repeat_penalty),
            seed=kwargs.get("seed", self.seed),
            max_tokens=kwargs.get("max_tokens", self.max_tokens),
            stop=list(stop if stop is not None else (kwargs.get("stop") or self.stop or [])),
            prompt_lookup=kwargs.get("prompt_lookup", self.prompt_lookup),
        )

    def get_num_tokens(self, text: str) -> int:
        """Exact count with the model's own tokenizer (the base class would fetch GPT-2's from a hub)."""
        from slmkit.agent.catalogue import resolve_model_path

        return GGUFTokenCounter(resolve_model_path(self.model)).count(text)

    def get_num_tokens_from_messages(self, messages: list[BaseMessage], tools: Sequence[Any] | None = None) -> int:
        """Exact prompt length after the chat template (and tool instructions) are applied."""
        local = self.load()
        plan = _plan(messages, tools=openai_tools(tools) if tools else None)
        return len(local.render(plan.messages))

    # -- generation ------------------------------------------------------------------------------------------
    def _events(
        self, messages: list[BaseMessage], stop: list[str] | None, **kwargs: Any
    ) -> Iterator[TextDelta | Completion | _ToolCallEvent]:
        """Run one call; the single place where tools, schemas and the lazy tool-call trigger are decided."""
        local = self.load(kwargs.get("model"))
        params = self._sampling(stop, **kwargs)
        tools: list[dict[str, Any]] | None = kwargs.get("tools")
        plan = _plan(
            messages,
            tools=tools,
            tool_choice=kwargs.get("tool_choice"),
            response_format=kwargs.get("response_format"),
        )
        prompt = local.render(plan.messages)
        texts = bool(kwargs.get("logprobs", self.logprobs))
        if plan.forced_tool_schema is not None:
            yield from self._tool_call(local, prompt, params, plan.forced_tool_schema, plan.tool_names)
            return
        grammar = compile_grammar(plan.grammar_schema) if plan.grammar_schema is not None else None
        if not plan.tool_names:
            yield from local.generate(prompt, params, grammar=grammar, token_texts=texts)
            return
        # tool_choice="auto": generate freely, but if the answer opens with "{" the model is calling a tool,
        # so start over under the tool-call grammar (a lazy grammar: free text costs nothing extra).
        head: list[TextDelta] | None = []
        gen = local.generate(prompt, params, token_texts=texts)
        for event in gen:
            if head is not None and isinstance(event, TextDelta):
                head.append(event)
                opening = "".join(d.text for d in head).lstrip()
                if not opening:
                    continue
                if opening.startswith("{"):
                    gen.close()
                    schema = tool_call_schema(plan.tools, "any")
                    yield from self._tool_call(local, prompt, params, schema, plan.tool_names)
                    return
                yield from head
                head = None
                continue
            if head:
                yield from head
            head = None
            yield event

    def _tool_call(
        self,
        local: LocalModel,
        prompt: list[int],
        params: SamplingParams,
        schema: dict[str, Any],
        tool_names: list[str],
    ) -> Iterator[TextDelta | Completion | _ToolCallEvent]:
        text: list[str] = []
        for event in local.generate(prompt, params, grammar=compile_grammar(schema)):
            if isinstance(event, TextDelta):
                text.append(event.text)
            else:
                yield _ToolCallEvent(parse_tool_call("".join(text), tool_names))
                yield event

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text: list[str] = []
        token_lps: list[tuple[str, float]] = []
        tool_calls = []
        done: Completion | None = None
        for event in self._events(messages, stop, **kwargs):
            if isinstance(event, TextDelta):
                text.append(event.text)
                token_lps.extend(event.token_logprobs)
                if run_manager:
                    run_manager.on_llm_new_token(event.text)
            elif isinstance(event, _ToolCallEvent):
                tool_calls.append(event.call)
            else:
                done = event
        assert done is not None
        message = AIMessage(
            content="" if tool_calls else "".join(text),
            tool_calls=tool_calls,
            usage_metadata=_usage(done),
            response_metadata=self._response_metadata(done, kwargs, token_lps, tool_calls=bool(tool_calls)),
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        called = False
        for event in self._events(messages, stop, **kwargs):
            if isinstance(event, TextDelta):
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=event.text))
                if run_manager:
                    run_manager.on_llm_new_token(event.text, chunk=chunk)
                yield chunk
            elif isinstance(event, _ToolCallEvent):
                call, called = event.call, True
                yield ChatGenerationChunk(
                    message=AIMessageChunk(
                        content="",
                        tool_call_chunks=[
                            {
                                "name": call["name"],
                                "args": json.dumps(call["args"]),
                                "id": call["id"],
                                "index": 0,
                                "type": "tool_call_chunk",
                            }
                        ],
                    )
                )
            else:
                yield ChatGenerationChunk(
                    message=AIMessageChunk(
                        content="",
                        usage_metadata=_usage(event),
                        response_metadata=self._response_metadata(event, kwargs, [], tool_calls=called),
                        chunk_position="last",
                    )
                )

    def _response_metadata(
        self,
        done: Completion,
        kwargs: dict[str, Any],
        token_lps: list[tuple[str, float]],
        *,
        tool_calls: bool,
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "model_name": kwargs.get("model", self.model),
            "model_provider": "llamacpp",
            "finish_reason": "tool_calls" if tool_calls else done.finish_reason,
            "confidence": done.confidence(),
            "timings": {
                "prompt_ms": round(done.prompt_ms, 2),
                "total_ms": round(done.total_ms, 2),
                "cached_prompt_tokens": done.cached_tokens,
            },
        }
        if done.drafted:
            meta["prompt_lookup"] = {"drafted": done.drafted, "accepted": done.accepted}
        if token_lps:
            meta["logprobs"] = {"content": [{"token": t, "logprob": lp} for t, lp in token_lps]}
        return meta

    # -- tools and structured output --------------------------------------------------------------------------
    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: dict[str, Any] | str | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools; calls are grammar-constrained, so arguments always match the tool's schema.

        ``tool_choice``: ``"auto"`` (default: the model decides), ``"any"``/``"required"``/``True`` (must call
        one), ``"none"``, or a tool name to force that tool.
        """
        formatted = openai_tools(tools)
        names = [t["function"]["name"] for t in formatted]
        choice = normalize_tool_choice(tool_choice, names)
        return super().bind(tools=formatted, tool_choice=choice, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        method: Literal["json_schema", "function_calling", "json_mode"] = "json_schema",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | Any]:
        """Output that always parses: ``json_schema`` (default) constrains generation to the schema.

        ``function_calling`` goes through a forced tool call; ``json_mode`` asks for a JSON object (constrained
        to ``schema`` when one is given, since a grammar costs nothing and small models drift otherwise).
        ``strict`` is accepted for API compatibility: output is always schema-exact here.
        """
        if kwargs:
            raise ValueError(f"Unexpected arguments for with_structured_output: {sorted(kwargs)}")
        is_pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
        ls_format = {"kwargs": {"method": method, "strict": strict}, "schema": schema}
        parser: Runnable[Any, Any]
        if method == "function_calling":
            tool = convert_to_openai_tool(schema)
            name = tool["function"]["name"]
            llm = self.bind_tools([schema], tool_choice=name, ls_structured_output_format=ls_format)
            parser = (
                PydanticToolsParser(tools=[schema], first_tool_only=True)
                if is_pydantic
                else JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
            )
        elif method in ("json_schema", "json_mode"):
            json_schema = convert_to_json_schema(schema) if schema is not None else None
            response_format = {
                "type": "json_schema" if method == "json_schema" else "json_object",
                "schema": json_schema,
            }
            llm = self.bind(response_format=response_format, ls_structured_output_format=ls_format)
            parser = PydanticOutputParser(pydantic_object=schema) if is_pydantic else JsonOutputParser()
        else:
            raise ValueError(f"method must be 'json_schema', 'function_calling' or 'json_mode', not {method!r}")
        if not include_raw:
            return llm | parser
        parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        fallback = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=llm) | parsed.with_fallbacks([fallback], exception_key="parsing_error")


class _ToolCallEvent:
    __slots__ = ("call",)

    def __init__(self, call: Any) -> None:
        self.call = call


class _Plan:
    """What one call sends: chat messages as dicts, plus the grammar it must follow (if any)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, str]] = []
        self.tools: list[dict[str, Any]] = []
        self.tool_names: list[str] = []
        self.forced_tool_schema: dict[str, Any] | None = None
        self.grammar_schema: dict[str, Any] | None = None


def _plan(
    messages: list[BaseMessage],
    *,
    tools: list[dict[str, Any]] | None = None,
    tool_choice: str | None = None,
    response_format: dict[str, Any] | None = None,
) -> _Plan:
    plan = _Plan()
    instructions: list[str] = []
    choice = tool_choice or "auto"
    if tools and choice != "none":
        plan.tools = tools
        plan.tool_names = [t["function"]["name"] for t in tools]
        instructions.append(tools_instructions(tools, choice))
        if choice != "auto":
            plan.forced_tool_schema = tool_call_schema(tools, choice)
    if response_format:
        schema = _response_schema(response_format)
        plan.grammar_schema = schema
        instructions.append(schema_instructions(schema))
    plan.messages = _to_chat_dicts(messages, "\n\n".join(instructions))
    return plan


def _response_schema(response_format: dict[str, Any]) -> dict[str, Any]:
    """Accept OpenAI's shapes: {"type": "json_schema", "json_schema": {"schema": ...}} and {"type": "json_object"}."""
    kind = response_format.get("type")
    if kind == "json_schema":
        schema = response_format.get("schema") or (response_format.get("json_schema") or {}).get("schema")
        if not schema:
            raise ValueError("response_format of type 'json_schema' needs a 'schema'.")
        return dict(schema)
    if kind == "json_object":
        return json_object_schema(response_format.get("schema"))
    raise ValueError(f"Unsupported response_format type {kind!r}: use 'json_schema' or 'json_object'.")


def _text(content: str | list[Any]) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif block.get("type") == "text":
            parts.append(block.get("text", ""))
        elif block.get("type") in ("image", "image_url", "audio", "file", "video"):
            raise ValueError(
                f"ChatLocalSLM takes text only; the message contains a {block['type']!r} block. Describe it in "
                "text, or route multimodal requests to a model that accepts them."
            )
    return "".join(parts)


def _to_chat_dicts(messages: list[BaseMessage], extra_system: str) -> list[dict[str, str]]:
    """LangChain messages -> role/content dicts every chat template accepts.

    Tool calls and tool results are written as ordinary assistant/user turns, because most small-model
    templates know no ``tool`` role.
    """
    out: list[dict[str, str]] = []
    for message in messages:
        if isinstance(message, SystemMessage):
            out.append({"role": "system", "content": _text(message.content)})
        elif isinstance(message, AIMessage):
            calls = "\n".join(render_tool_call(c) for c in message.tool_calls)
            out.append({"role": "assistant", "content": calls or _text(message.content)})
        elif isinstance(message, ToolMessage):
            status = " (error)" if message.status == "error" else ""
            name = f" {message.name}" if message.name else ""
            out.append({"role": "user", "content": f"Result of tool{name}{status}: {_text(message.content)}"})
        elif isinstance(message, HumanMessage):
            out.append({"role": "user", "content": _text(message.content)})
        else:
            out.append({"role": message.type, "content": _text(message.content)})
    if extra_system:
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{extra_system}".strip()}
        else:
            out.insert(0, {"role": "system", "content": extra_system})
    # Templates such as Qwen's reject consecutive same-role turns less often than they mishandle them; merge.
    merged: list[dict[str, str]] = []
    for item in out:
        if merged and merged[-1]["role"] == item["role"] and item["role"] != "system":
            merged[-1] = {"role": item["role"], "content": merged[-1]["content"] + "\n\n" + item["content"]}
        else:
            merged.append(item)
    return merged


def _usage(done: Completion) -> UsageMetadata:
    return UsageMetadata(
        input_tokens=done.prompt_tokens,
        output_tokens=done.completion_tokens,
        total_tokens=done.prompt_tokens + done.completion_tokens,
        input_token_details={"cache_read": done.cached_tokens},
    )
