"""The public surface of slmkit.guards: frozen, lazy, and configs that round-trip."""

from __future__ import annotations

import subprocess
import sys

import pytest

import slmkit.guards
from slmkit.core.errors import ConfigurationError
from slmkit.guards import GroundingGuard, GroundingGuardConfig, PIIGuard, PIIGuardConfig


def test_guards_all_is_frozen():
    assert sorted(slmkit.guards.__all__) == [
        "GroundingGuard",
        "GroundingGuardConfig",
        "GroundingResult",
        "Guard",
        "GuardCall",
        "GuardMiddleware",
        "GuardReport",
        "Guarded",
        "LlamaTokenScorer",
        "PIIFinding",
        "PIIGuard",
        "PIIGuardConfig",
        "PIIVault",
        "SentenceSupport",
        "StreamRestorer",
        "TokenScorer",
    ]
    for name in slmkit.guards.__all__:
        assert getattr(slmkit.guards, name) is not None


def test_import_loads_no_heavy_library():
    code = (
        "import sys, slmkit.guards; "
        "heavy = [m for m in ('presidio_analyzer', 'spacy', 'torch', 'llama_cpp', 'sentence_transformers') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_configs_round_trip():
    pii = PIIGuardConfig(actions={"CREDIT_CARD": "block"}, deny_list={"PROJECT": ["Falcon"]}, mask_keep_last=4)
    assert PIIGuardConfig.model_validate(pii.model_dump()) == pii
    grounding = GroundingGuardConfig(signals=("lexical",), action="abstain")
    assert GroundingGuardConfig.model_validate(grounding.model_dump()) == grounding


def test_constructors_are_cheap_and_validate():
    PIIGuard()
    GroundingGuard()
    with pytest.raises(ConfigurationError, match="token scorer"):
        GroundingGuard(signals=("lexical", "slm"))
    with pytest.raises(ValueError):
        PIIGuard(hash_salt="short")
