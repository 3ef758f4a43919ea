"""Rules: small declarative signals a policy composes, in order, into a decision.

A rule looks at a :class:`RoutingRequest` and returns a :class:`Signal` (its value, whether it fired, the route it
asks for). The policy takes the first rule that fires and asks for a route the constraints allow; later rules are
not evaluated (so an expensive rule placed last costs nothing when a cheap one decides). ``KeepLocalIfPII`` is not a
preference but a constraint: wherever it is listed, the policy applies it to every route that may be called.

    prompt ──► PreferLargeIfLong (tokens) ──► Keywords (regex) ──► Semantic (embedding) ──► Learned (score) ──► …
                 first that fires wins; none fires -> the policy's cascade or default route
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings
from pydantic import ConfigDict, Field, PrivateAttr, field_validator

from slmkit.core.config import SlmkitConfig
from slmkit.core.errors import ConfigurationError
from slmkit.routing.decision import Signal
from slmkit.routing.embedding import default_embeddings, embed_texts
from slmkit.routing.learned import LearnedRouter
from slmkit.routing.privacy import PIIDetector
from slmkit.routing.request import RoutingRequest

if TYPE_CHECKING:
    import numpy as np

    from slmkit.routing.routes import Route

__all__ = ["KeepLocalIfPII", "Keywords", "Learned", "PreferLargeIfLong", "Rule", "Semantic"]


class Rule(SlmkitConfig, ABC):
    """A preference: may ask for a route for a request."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    route: str | None = None
    """The route to ask for; None: the policy's strong route (the cascade's second route, else the priciest)."""
    force: bool = False
    """Move a conversation off the route it started on (see ``RoutedChatModel.sticky_sessions``)."""

    @property
    def name(self) -> str:
        return type(self).__name__

    @abstractmethod
    def evaluate(self, request: RoutingRequest) -> Signal:
        """The signal for this request; ``fired=True`` with ``route`` set to ask for a route."""

    def resolved(self, routes: Mapping[str, Route], strong: str) -> Rule:
        """A copy with ``route=None`` resolved to ``strong``; fails if the route does not exist."""
        rule = self if self.route else self.model_copy(update={"route": strong})
        if rule.route not in routes:
            raise ConfigurationError(
                f"{self.name} asks for route {rule.route!r}, but the policy's routes are {sorted(routes)}."
            )
        return rule


class PreferLargeIfLong(Rule):
    """Long conversations go to a route with a large context window (and usually a stronger model).

    Example:
        .. code-block:: python

            PreferLargeIfLong(tokens=1500)              # to the policy's strong route
            PreferLargeIfLong(tokens=6000, route="long-context")
    """

    tokens: int = Field(default=1500, ge=1)
    """Estimated prompt tokens (whole conversation, tiktoken) from which the rule fires."""

    def evaluate(self, request: RoutingRequest) -> Signal:
        n = request.estimated_tokens
        return Signal(name="length", value=n, fired=n >= self.tokens, route=self.route, detail=f">= {self.tokens}")


class Keywords(Rule):
    """Words or regular expressions in the prompt ask for a route (case-insensitive).

    Example:
        .. code-block:: python

            Keywords(route="llm", words=["prove", "derive", "step by step"], patterns=[r"\\bO\\(n\\^?\\d\\)"])
    """

    words: list[str] = Field(default_factory=list)
    """Whole words or phrases."""
    patterns: list[str] = Field(default_factory=list)
    """Regular expressions (Python syntax)."""
    _regex: re.Pattern[str] = PrivateAttr()

    def model_post_init(self, context: Any) -> None:
        if not self.words and not self.patterns:
            raise ConfigurationError("Keywords needs at least one word or pattern.")
        parts = [rf"\b{re.escape(w)}\b" for w in self.words] + [f"(?:{p})" for p in self.patterns]
        try:
            self._regex = re.compile("|".join(parts), re.IGNORECASE)
        except re.error as exc:
            raise ConfigurationError(f"Keywords has an invalid regular expression: {exc}. Check `patterns`.") from exc

    def evaluate(self, request: RoutingRequest) -> Signal:
        match = self._regex.search(request.prompt)
        return Signal(
            name="keywords", value=match.group(0) if match else None, fired=match is not None, route=self.route
        )


class Semantic(Rule):
    """The prompt's nearest example utterance (cosine similarity of embeddings) picks a category, and so a route.

    Categories are route names, or are mapped to routes with ``to``. Like semantic-router, a category is only taken
    when its best example is similar enough (``threshold``).

    Example:
        .. code-block:: python

            Semantic(
                utterances={"code": ["write a function that ...", "fix this stack trace"],
                            "chitchat": ["hi!", "how are you?", "thanks, that's all"]},
                to={"code": "llm", "chitchat": "slm"},
            )
    """

    utterances: dict[str, list[str]]
    """Example utterances per category."""
    to: dict[str, str] = Field(default_factory=dict)
    """Category -> route; a category missing here must itself be a route name."""
    threshold: float = Field(default=0.3, ge=-1.0, le=1.0)
    """Cosine similarity the best example must reach (0.3 suits MiniLM and its static table: paraphrases score
    0.3-0.8)."""
    embeddings: Embeddings | None = None
    """Embedder; None: the static table distilled from the packaged MiniLM (``SentenceTransformerEmbeddings()``
    for the full model)."""
    _examples: tuple[np.ndarray, list[str]] | None = PrivateAttr(default=None)

    @field_validator("utterances")
    @classmethod
    def _non_empty(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        empty = [k for k, v in value.items() if not v]
        if not value or empty:
            raise ConfigurationError(f"Semantic needs example utterances for every category; empty: {empty or 'all'}.")
        return value

    def resolved(self, routes: Mapping[str, Route], strong: str) -> Rule:
        if self.route is not None:
            raise ConfigurationError("Semantic takes its routes from the categories: map them with `to`, not `route`.")
        stray = sorted(set(self.to) - set(self.utterances))
        unknown = sorted(c for c in self.utterances if self.to.get(c, c) not in routes)
        if stray or unknown:
            raise ConfigurationError(
                f"Semantic: categories {unknown} are not route names (map them to routes with `to`); `to` names "
                f"categories without utterances: {stray}. Routes: {sorted(routes)}."
            )
        return self

    @property
    def embedder(self) -> Embeddings:
        return self.embeddings if self.embeddings is not None else default_embeddings()

    def examples(self) -> tuple[np.ndarray, list[str]]:
        """Embedded examples and their categories (computed on first use)."""
        if self._examples is None:
            categories = [c for c, texts in self.utterances.items() for _ in texts]
            texts = [t for ts in self.utterances.values() for t in ts]
            self._examples = (embed_texts(self.embedder, texts), categories)
        return self._examples

    def evaluate(self, request: RoutingRequest) -> Signal:
        matrix, categories = self.examples()
        similarity = matrix @ request.embedding(self.embedder)
        best = int(similarity.argmax())
        category, value = categories[best], float(similarity[best])
        return Signal(
            name="semantic",
            value=round(value, 4),
            fired=value >= self.threshold,
            route=self.to.get(category, category),
            detail=f"category {category!r}",
        )


class Learned(Rule):
    """A trained :class:`LearnedRouter` asks for the strong route when its score reaches the threshold.

    Example:
        .. code-block:: python

            Learned(router=LearnedRouter.load("router.npz"))            # calibrated threshold
            Learned(router=router, threshold=0.4, route="llm")
    """

    router: LearnedRouter
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    """Score from which to ask for the route; None: the router's calibrated threshold."""

    def model_post_init(self, context: Any) -> None:
        if not self.router.fitted or (self.threshold is None and self.router.threshold is None):
            raise ConfigurationError("Learned needs a trained LearnedRouter: fit() or load() it before building.")

    def evaluate(self, request: RoutingRequest) -> Signal:
        score = self.router.score(request.prompt, vector=request.embedding(self.router.embeddings))
        threshold = self.threshold if self.threshold is not None else self.router.threshold
        assert threshold is not None
        return Signal(
            name="learned",
            value=round(score, 4),
            fired=score >= threshold,
            route=self.route,
            detail=f">= {threshold:.3f}",
        )


class KeepLocalIfPII(SlmkitConfig):
    """Private data never reaches a non-local route, unless it is replaced by placeholders first.

    A policy with a non-local route always applies this constraint (a default one if none is listed). It runs only
    when a non-local route may be called, on every message of the conversation.

    Example:
        .. code-block:: python

            KeepLocalIfPII()                                  # route locally when personal data is found
            KeepLocalIfPII(pseudonymize=True)                 # send <PERSON_1> instead, restore in the answer
            KeepLocalIfPII(detector=PIIGuard(entities=["EMAIL_ADDRESS", "IBAN_CODE"]))
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    detector: PIIDetector | None = None
    """Anything with ``detect(text) -> findings``; None: ``PIIGuard(entities=PERSONAL_DATA)`` (names, contact
    details, account and ID numbers; created on first use). ``PIIGuard()`` counts organizations, places and dates
    too."""
    pseudonymize: bool = False
    """Allow non-local routes for private data, with values replaced by vault placeholders (restored after)."""

    @property
    def name(self) -> str:
        return "KeepLocalIfPII"

    def get_detector(self) -> PIIDetector:
        from slmkit.routing.privacy import default_detector

        return self.detector if self.detector is not None else default_detector()
