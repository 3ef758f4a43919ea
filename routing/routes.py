"""Routes: the named targets a policy chooses between, each a LangChain chat model with a price and a privacy flag.

A route adds to its model what a policy needs to decide before calling it: the price per 1,000 input and output
tokens (so a decision has an estimated cost, and a response an actual one from its usage metadata), the context
window (so long prompts go where they fit), and whether private data may be sent to it (``local``).
"""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from pydantic import ConfigDict, Field

from slmkit.core.config import SlmkitConfig

__all__ = ["Route"]


class Route(SlmkitConfig):
    """One target of a routing policy.

    Example:
        .. code-block:: python

            local = Route(model=ChatLocalSLM(), local=True, context_window=4096)
            remote = Route(
                model=ChatOpenAI(model="gpt-4.1-mini", timeout=20, max_retries=0),
                input_usd_per_1k=0.0004, output_usd_per_1k=0.0016, context_window=128_000,
            )
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: BaseChatModel
    """Any LangChain chat model: ``ChatLocalSLM``, ``ChatOpenAI`` (any OpenAI-compatible endpoint), ``ChatOllama``."""
    local: bool = False
    """True if private data may be sent here: the model runs on this machine (or on a server you trust as much)."""
    input_usd_per_1k: float = Field(default=0.0, ge=0.0)
    """Price of 1,000 prompt tokens in US dollars (0 for a local model)."""
    output_usd_per_1k: float = Field(default=0.0, ge=0.0)
    """Price of 1,000 generated tokens in US dollars."""
    context_window: int = Field(default=4096, ge=64)
    """Prompt plus answer tokens the model accepts; prompts that do not fit are not sent here."""

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """US dollars for a call with these token counts."""
        return (input_tokens * self.input_usd_per_1k + output_tokens * self.output_usd_per_1k) / 1000

    @property
    def free(self) -> bool:
        return self.input_usd_per_1k == 0 and self.output_usd_per_1k == 0
