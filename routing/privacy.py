"""Private data and routes: find PII in a conversation, and replace it by placeholders before it leaves the machine.

The policy asks :func:`find_pii` only when a non-local route is in play (local-only decisions skip the scan). A
detector is anything with ``detect(text) -> findings`` (each with ``start``, ``end``, ``entity_type``, ``score``);
the default is ``slmkit.guards.PIIGuard``, created on first use. If private data is found, either every non-local
route is ruled out, or (``pseudonymize=True``) the messages are rewritten with vault placeholders
(``<PERSON_1>``) for the remote route and the placeholders in its answer are restored.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from langchain_core.messages import AIMessage, BaseMessage

from slmkit.core.errors import MissingDependencyError
from slmkit.routing.request import message_text

__all__ = ["PIIDetector", "Vault", "default_detector", "find_pii", "new_vault", "pseudonymize", "restore"]


@runtime_checkable
class PIIDetector(Protocol):
    """Anything that finds PII spans (``start``, ``end``, ``entity_type``, ``score``) in a text.

    ``slmkit.guards.PIIGuard`` is one.
    """

    def detect(self, text: str) -> Sequence[Any]: ...


class Vault(Protocol):
    """Placeholder <-> value store for one request (``slmkit.guards.PIIVault`` is one)."""

    def placeholder(self, entity_type: str, value: str) -> str: ...

    def restore(self, text: str) -> str: ...


@functools.lru_cache(maxsize=1)
def default_detector() -> PIIDetector:
    """``PIIGuard(entities=PERSONAL_DATA)``: personal data only (names, contact details, account and ID numbers),
    not every PII type (see ``PERSONAL_DATA``); loads on the first detection."""
    try:
        from slmkit.guards.pii import PERSONAL_DATA, PIIGuard
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise MissingDependencyError("presidio-analyzer", extra="guards", purpose="PII detection in routing") from exc
    detector: PIIDetector = PIIGuard(entities=list(PERSONAL_DATA))
    return detector


def new_vault() -> Vault:
    from slmkit.guards import PIIVault

    vault: Vault = PIIVault()
    return vault


def find_pii(detector: PIIDetector, messages: Sequence[BaseMessage]) -> dict[int, list[Any]]:
    """Findings per message index (only messages with findings)."""
    found: dict[int, list[Any]] = {}
    for i, message in enumerate(messages):
        findings = list(detector.detect(message_text(message)))
        if findings:
            found[i] = findings
    return found


def pseudonymize(messages: Sequence[BaseMessage], found: dict[int, list[Any]], vault: Vault) -> list[BaseMessage]:
    """Copies of ``messages`` with every found value replaced by its placeholder, wherever it occurs.

    Replacing by value (longest first) also covers the value's other occurrences, e.g. in tool-call arguments.
    """
    mapping: dict[str, str] = {}
    for i, findings in found.items():
        text = message_text(messages[i])
        for f in findings:
            value = text[f.start : f.end]
            if value.strip():
                mapping.setdefault(value, vault.placeholder(f.entity_type, value))
    ordered = sorted(mapping.items(), key=lambda kv: -len(kv[0]))

    def swap(text: str) -> str:
        for secret, placeholder in ordered:
            text = text.replace(secret, placeholder)
        return text

    out: list[BaseMessage] = []
    for message in messages:
        update: dict[str, Any] = {"content": _map_strings(message.content, swap)}
        if isinstance(message, AIMessage) and message.tool_calls:
            update["tool_calls"] = [{**c, "args": _map_strings(c["args"], swap)} for c in message.tool_calls]
        out.append(message.model_copy(update=update))
    return out


def restore(message: AIMessage, vault: Vault) -> AIMessage:
    """The remote answer with placeholders turned back into the private values (text and tool-call arguments)."""
    calls = [{**c, "args": _map_strings(c["args"], vault.restore)} for c in message.tool_calls]
    return message.model_copy(update={"content": _map_strings(message.content, vault.restore), "tool_calls": calls})


def _map_strings(value: Any, fn: Callable[[str], str]) -> Any:
    """``fn`` applied to every string inside ``value`` (content blocks, tool-call arguments)."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {k: _map_strings(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_strings(v, fn) for v in value]
    return value
