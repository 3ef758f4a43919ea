"""langchain-tests' standard integration suite against the real packaged SmolLM2-135M."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage
from langchain_tests.integration_tests import ChatModelIntegrationTests

from slmkit.agent import ChatLocalSLM


class TestChatLocalSLMIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[ChatLocalSLM]:
        return ChatLocalSLM

    @property
    def chat_model_params(self) -> dict:
        return {"model": "smollm2-135m-instruct", "seed": 7}

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def model_override_value(self) -> str:
        return "qwen2.5-coder-0.5b-instruct"

    @property
    def supported_usage_metadata_details(self) -> dict:
        return {"invoke": ["cache_read_input"], "stream": ["cache_read_input"]}

    def invoke_with_cache_read_input(self, *, stream: bool = False) -> AIMessage:
        # The same long prefix twice: the second call reads it from llama.cpp's KV cache.
        llm = ChatLocalSLM(model="smollm2-135m-instruct", max_tokens=8)
        prompt = "Here is a document.\n" + "The quick brown fox jumps over the lazy dog. " * 40 + "\nSummarise it."
        llm.invoke(prompt)
        if not stream:
            return llm.invoke(prompt)
        full = None
        for chunk in llm.stream(prompt):
            full = chunk if full is None else full + chunk
        assert isinstance(full, AIMessage)
        return full

    @pytest.mark.xfail(
        reason="SmolLM2-135M does not decide on its own to call a tool under tool_choice='auto' (it answers in "
        "prose); forced calls (tool_choice='any' or a tool name) are grammar-constrained and pass "
        "test_tool_calling and test_tool_choice",
        strict=True,
    )
    def test_agent_loop(self, model) -> None:
        super().test_agent_loop(model)
