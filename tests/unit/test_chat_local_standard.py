"""langchain-tests' standard unit suite for ChatLocalSLM (construction, binding, params; no model load)."""

from __future__ import annotations

import pytest
from langchain_core.load import dumpd, load
from langchain_tests.unit_tests import ChatModelUnitTests
from pydantic import ValidationError

from slmkit.agent import ChatLocalSLM


class TestChatLocalSLMUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatLocalSLM]:
        return ChatLocalSLM

    @property
    def chat_model_params(self) -> dict:
        return {"model": "smollm2-135m-instruct"}

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def model_override_value(self) -> str:
        return "qwen2.5-coder-0.5b-instruct"

    @pytest.mark.xfail(
        reason="langchain_core.load with allowed_objects='all' admits only classes listed in langchain-core's own "
        "mapping, so no third-party class can pass; test_round_trip_through_langchain_load covers it",
        strict=True,
    )
    def test_serdes(self, model, snapshot) -> None:
        super().test_serdes(model, snapshot)


def test_round_trip_through_langchain_load():
    llm = ChatLocalSLM(model="qwen2.5-coder-0.5b-instruct", temperature=0.7, max_tokens=64, stop=["\n\n"], seed=3)
    data = dumpd(llm)
    assert "n_threads" not in data["kwargs"], "machine-dependent defaults must not be frozen into configs"
    back = load(data, valid_namespaces=["slmkit"], allowed_objects=[ChatLocalSLM])
    assert isinstance(back, ChatLocalSLM)
    assert back.model_dump() == llm.model_dump()


def test_construction_loads_nothing(monkeypatch):
    from slmkit.agent import llama_runtime

    monkeypatch.setattr(llama_runtime, "_load", lambda *a, **k: pytest.fail("constructor loaded a model"))
    llm = ChatLocalSLM(model="/nonexistent/file.gguf")
    assert llm.model == "/nonexistent/file.gguf"


@pytest.mark.parametrize("bad", [{"temperature": -1}, {"n_ctx": 8}, {"max_tokens": 0}, {"top_p": 0}, {"n_threads": 0}])
def test_invalid_settings_fail_at_construction(bad):
    with pytest.raises(ValidationError):
        ChatLocalSLM(**bad)
