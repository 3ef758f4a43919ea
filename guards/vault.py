"""A reversible vault of pseudonyms: ``<PERSON_1>`` stands for the same value all conversation long.

Pseudonymizing the input puts each PII value into the vault and the placeholder into the text the (remote) model
sees; restoring the answer puts the values back. Streaming answers go through :class:`StreamRestorer`, which holds
back a tail that could still grow into a placeholder (``"<PER"`` ... ``"SON_1>"``), so a placeholder split across
chunks is restored whole and nothing else is delayed.

    "Call Ada at 555-0100"  --pseudonymize-->  "Call <PERSON_1> at <PHONE_NUMBER_1>"  --LLM-->  "<PERSON_1> ..."
                                               vault: <PERSON_1> = "Ada", <PHONE_NUMBER_1> = "555-0100"
    "<PERSON_1> ..."  --restore-->  "Ada ..."
"""

from __future__ import annotations

import re
import threading

__all__ = ["PLACEHOLDER", "PIIVault", "StreamRestorer"]

PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*?)_(\d+)>")
"""A placeholder as the vault writes it: ``<ENTITY_TYPE_N>``."""
_WRITTEN = re.compile(r"[<\[{(]\s?([A-Z][A-Z0-9_]*?)_(\d+)\s?[>\]})]")
"""A placeholder as a model may write it back (small models turn ``<PERSON_1>`` into ``[PERSON_1]``)."""
_MAX_PLACEHOLDER = 64
_PARTIAL = re.compile(r"[<\[{(]\s?[A-Z0-9_]*$")


class PIIVault:
    """Value <-> placeholder mapping for one conversation (thread-safe).

    Example:
        .. code-block:: python

            vault = PIIVault()
            vault.placeholder("PERSON", "Ada Lovelace")     # "<PERSON_1>"
            vault.placeholder("PERSON", "Ada Lovelace")     # "<PERSON_1>" again
            vault.restore("Hello <PERSON_1>!")             # "Hello Ada Lovelace!"
    """

    def __init__(self) -> None:
        self._by_value: dict[tuple[str, str], str] = {}
        self._by_placeholder: dict[str, str] = {}
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def placeholder(self, entity_type: str, value: str) -> str:
        """The placeholder for ``value`` (a new one the first time the value is seen)."""
        key = (entity_type, value)
        with self._lock:
            existing = self._by_value.get(key)
            if existing is not None:
                return existing
            n = self._counts.get(entity_type, 0) + 1
            self._counts[entity_type] = n
            token = f"<{entity_type}_{n}>"
            self._by_value[key] = token
            self._by_placeholder[token] = value
            return token

    def value(self, placeholder: str) -> str | None:
        return self._by_placeholder.get(placeholder)

    def restore(self, text: str) -> str:
        """Replace every known placeholder in ``text`` by its value; unknown ones are left as they are.

        Brackets are matched leniently (``[PERSON_1]``, ``{PERSON_1}``, ``( PERSON_1 )``), since the model that saw
        the placeholder does not always copy it exactly; the entity and number must still match a vault entry.
        """
        return _WRITTEN.sub(lambda m: self._by_placeholder.get(f"<{m.group(1)}_{m.group(2)}>", m.group(0)), text)

    def restorer(self) -> StreamRestorer:
        """A restorer for one streamed answer."""
        return StreamRestorer(self)

    def __len__(self) -> int:
        return len(self._by_placeholder)

    def __contains__(self, placeholder: object) -> bool:
        return placeholder in self._by_placeholder

    def to_dict(self) -> dict[str, str]:
        """Placeholder -> value, e.g. to keep a conversation's vault in a session store (it holds PII: encrypt it)."""
        return dict(self._by_placeholder)

    @classmethod
    def from_dict(cls, mapping: dict[str, str]) -> PIIVault:
        vault = cls()
        for token, value in mapping.items():
            match = PLACEHOLDER.fullmatch(token)
            if match is None:
                raise ValueError(f"{token!r} is not a vault placeholder such as '<PERSON_1>'.")
            entity, n = match.group(1), int(match.group(2))
            vault._by_placeholder[token] = value
            vault._by_value[(entity, value)] = token
            vault._counts[entity] = max(vault._counts.get(entity, 0), n)
        return vault

    def __repr__(self) -> str:
        return f"PIIVault({len(self)} values)"


class StreamRestorer:
    """Restores placeholders in a stream of text chunks, even when a placeholder is split across chunks.

    Example:
        .. code-block:: python

            restorer = vault.restorer()
            out = [restorer.feed(chunk) for chunk in ["Hi <PER", "SON_1>, welcome"]]
            out.append(restorer.flush())
            "".join(out)                                   # "Hi Ada Lovelace, welcome"
    """

    def __init__(self, vault: PIIVault) -> None:
        self._vault = vault
        self._pending = ""

    def feed(self, chunk: str) -> str:
        """Text that is safe to emit now (restored); a possible placeholder prefix is held back."""
        text = self._pending + chunk
        cut = len(text)
        tail = _PARTIAL.search(text)
        if tail is not None and len(text) - tail.start() <= _MAX_PLACEHOLDER:
            cut = tail.start()
        self._pending = text[cut:]
        return self._vault.restore(text[:cut])

    def flush(self) -> str:
        """Whatever is still held back, at the end of the stream."""
        text, self._pending = self._pending, ""
        return self._vault.restore(text)
