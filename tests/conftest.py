"""Shared test settings: everything runs offline; real-model tests use the packaged SmolLM2."""

from __future__ import annotations

import os

# No test may reach a model hub: fail loudly instead of downloading.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
