"""``without_torch``: a thread's imports inside the block see the named modules as missing; nothing else changes."""

from __future__ import annotations

import importlib
import sys
import threading

import pytest

from slmkit.core.imports import without_torch


@pytest.fixture
def optional_module(tmp_path, monkeypatch):
    """A module that exists on disk and is not imported yet."""
    (tmp_path / "slmkit_toy_optional.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "slmkit_toy_optional", raising=False)
    yield "slmkit_toy_optional"
    sys.modules.pop("slmkit_toy_optional", None)


def test_inside_the_block_the_module_is_missing_and_after_it_imports(optional_module):
    with without_torch([optional_module]), pytest.raises(ModuleNotFoundError, match="left out by slmkit"):
        importlib.import_module(optional_module)
    assert importlib.import_module(optional_module).VALUE == 42


def test_other_threads_import_as_usual(optional_module):
    seen: list[int] = []
    with without_torch([optional_module]):
        worker = threading.Thread(target=lambda: seen.append(importlib.import_module(optional_module).VALUE))
        worker.start()
        worker.join(10)
    assert seen == [42]


def test_an_imported_module_stays_usable(optional_module):
    module = importlib.import_module(optional_module)
    with without_torch([optional_module]):
        assert importlib.import_module(optional_module) is module
    assert not any(type(f).__name__ == "_Refuse" for f in sys.meta_path)
