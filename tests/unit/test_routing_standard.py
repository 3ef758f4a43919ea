"""langchain-tests' standard unit suite for RoutedChatModel, over fake routes (no model, no network)."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import FakeListChatModel
from langchain_tests.unit_tests import ChatModelUnitTests

from slmkit.routing import Cascade, Keywords, Route, RoutedChatModel, RoutingPolicy


def _policy() -> RoutingPolicy:
    return RoutingPolicy(
        routes={
            "slm": Route(model=FakeListChatModel(responses=["small"]), local=True),
            "llm": Route(model=FakeListChatModel(responses=["large"]), input_usd_per_1k=1.0, output_usd_per_1k=2.0),
        },
        rules=[Keywords(words=["prove"])],
        cascade=Cascade(first="slm", then="llm", escalate_below=0.5),
    )


class TestRoutedChatModelUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[RoutedChatModel]:
        return RoutedChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"policy": _policy()}

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        # RoutedChatModel passes temperature, max_tokens and stop on to the route; timeouts and retries belong
        # to each route's own model.
        return {"temperature": 0, "max_tokens": 100, "stop": []}
