"""slmkit's own PII recognizers, for the entities where Presidio with a small spaCy model is weak.

Measured on Presidio's synthetic set (``benchmarks/pii_presidio_synth.py``), vanilla Presidio finds no street
addresses, zip codes, titles or ages (it has no recognizer for them), and spaCy's small model misses names after an
honorific. Each recognizer here is a small declarative class in Presidio's style: regular expressions with a score,
optional context words that raise the score, and a validation hook where a checksum exists.

    text -> regex matches (one capture group = the PII part) -> validate -> RecognizerResult(entity, span, score)

The results go through the same analyzer as Presidio's own, so allow-lists, thresholds and context enhancement
apply to them too. Checksums used by the guard (Luhn, IBAN mod-97) live here as plain functions for reuse in tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ENTITIES",
    "RegexRule",
    "card_candidates",
    "extra_recognizers",
    "iban_valid",
    "luhn_valid",
    "phone_candidates",
]

ENTITIES = ("STREET_ADDRESS", "ZIP_CODE", "AGE", "TITLE", "PERSON", "PHONE_NUMBER", "CREDIT_CARD", "DATE_TIME")
"""Entities our recognizers emit (PERSON: names after an honorific; PHONE_NUMBER and CREDIT_CARD: numbers next to a
context word that Presidio's recognizers miss; DATE_TIME: ISO date-times with their clock time)."""


def luhn_valid(number: str) -> bool:
    """The Luhn checksum of payment card numbers (digits only; separators are ignored)."""
    digits = [int(c) for c in number if c.isdigit()]
    if len(digits) < 12:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """ISO 13616 mod-97 check of an IBAN (spaces ignored)."""
    compact = re.sub(r"\s+", "", iban).upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{10,30}", compact):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


@dataclass(frozen=True)
class RegexRule:
    """One pattern of a recognizer: the PII is capture group 1 (or the whole match when there is none)."""

    name: str
    regex: str
    score: float
    flags: int = 0


# -- building blocks ------------------------------------------------------------------------------------------------
_UPPER = "A-ZÀ-ÖØ-Þ" + "".join(c for c in map(chr, range(0x100, 0x530)) if c.isupper())
"""Capital letters of the Latin, Greek and Cyrillic scripts ("Č", "Ł", "Π", "Ж"), for a character class."""
_CAP = rf"[{_UPPER}][\w'’.\-]*"  # a capitalised word, accents and other scripts allowed
_WORD = r"[\w'’.\-]+"
_NUM = r"\d{1,6}[A-Za-z]?"
_STREET_TYPES = (
    r"Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Square|Sq|Terrace|Way|"
    r"Circle|Cir|Highway|Hwy|Parkway|Pkwy|Alley|Crescent|Close|Grove|Row|Trail|Plaza|Walk|Mews|Gardens|Heights|"
    r"Turnpike|Pass|Pike|Mall|Loop|Run|Crossing|Expressway|Freeway|Junction|Causeway|Str|Straße|Strasse|"
    r"u|utca|út|útja|tér|körút|krt|rkp|sor|köz"  # Hungarian: "Kálmán Imre u. 12.", "Belgrád rkp. 18."
)
_PREFIX_TYPES = (
    r"Rue|Rua|Via|Viale|Calle|Avenida|Av|Avenue|Piazza|Plaza|Largo|Travessa|Boulevard|Chemin|Allée|Strada|"
    r"Ulica|ul|Carrer|Camino|Rambla|Paseo|Praça|Corso|Vicolo|Quai|Impasse|Route|Estrada"
)
_PARTICLES = r"(?:de|du|da|do|dos|das|des|della|delle|del|di|la|le|los|las|el|von|van|der|den|y|e)"
# Street-name endings of compound words (German, Dutch, Nordic, Finnish, Hungarian, Polish, ...).
_COMPOUND_ENDINGS = (
    r"straße|strasse|str\.|weg|gasse|platz|allee|ring|damm|gade|vej|vägen|gatan|gata|veien|vegen|gaten|"
    r"katu|tie|kuja|polku|laan|straat|plein|gracht|dreef|utca|út|tér|park|sgade|stræde|torget|torg|backe"
)
_UNIT = r"(?i:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Fl|Box|Room|Rm|Bldg|Building)\.?\s*#?\s*\d+[A-Za-z]?"
_PLACE_LINKS = r"(?:de|du|da|do|di|del|la|le|nad|pod|na|am|im|an|sur|sous|upon|u|v)"
_PLACE = rf"(?:{_CAP}|nan)(?:[ \t]+(?:{_PLACE_LINKS}[ \t]+)?(?:{_CAP}|\(?{_CAP}\)?))*"
"""A place name of an address: capitalised words, lower-case links inside ("Ostrov nad Ohrí"), and "nan" (the
generator of Presidio's data writes missing states so)."""
_AFTER_UNIT = rf"(?:,?\s+{_UNIT}(?:[ \t]+{_PLACE})?)*"
"""Units after the street, then maybe the place on the same line: "Apt. 615 Moosleerau Switzerland"."""

# The rest of an address block after the street line: ", Utrecht", "\n Apt. 949", "\nToronto\n, ON\n 82269",
# "Hungary 34796" (unit lines, places in capitals, state codes and postcodes, separated by commas or line breaks).
_ADDRESS_PART = rf"(?:{_UNIT}|(?:{_PLACE}|[A-Z]{{2,3}}|\d{{4,6}}(?:-\d{{3,4}})?)(?:[ \t]+(?:{_PLACE}|\d{{3,6}}))*)"
_ADDRESS_SEP = r"[ \t]*(?:,[ \t]*(?:\r?\n[ \t>?]*)*|(?:\r?\n[ \t>?]*)+(?:,[ \t]*)?)"
"""Between the lines of an address block: a comma, line breaks (blank lines and "> " or "??? " quote marks too),
or a line break then a comma ("Toronto\n, ON\n 82269")."""
_ADDRESS_TAIL = rf"(?:{_ADDRESS_SEP}{_ADDRESS_PART}){{0,4}}"

_STREET_RULES = [
    # "0896 69 Farnell Street", "3485 615 Benedum Drive Apt. 12", "35 Pentelis Str."
    RegexRule(
        "number street type",
        rf"\b((?:{_NUM}\s+){{1,2}}(?:{_CAP}\s+){{0,3}}{_CAP}\s+(?:{_STREET_TYPES})\b\.?(?:\s+\d{{1,5}}[A-Za-z]?\b\.?)?"
        rf"{_AFTER_UNIT}{_ADDRESS_TAIL})",
        0.9,
    ),
    # "Via Nuova del Campo 85", "41 Avenida Pedro Ulisses 888", "rue du centre 320"
    RegexRule(
        "prefix type street",
        rf"\b((?:{_NUM}\s+)?(?i:{_PREFIX_TYPES})\.?\s+(?:(?:{_PARTICLES}|{_CAP})\s+){{0,4}}{_WORD}\s+{_NUM}\b"
        rf"{_AFTER_UNIT}{_ADDRESS_TAIL})",
        0.9,
    ),
    # "Augsburger Strasse 36", "6750 Koskikatu 25 Apt. 864", "Asselsestraat 7"
    RegexRule(
        "compound street",
        rf"\b((?:{_NUM}\s+)?(?:{_CAP}\s+)?\w*(?i:{_COMPOUND_ENDINGS})\s+{_NUM}\b\.?{_AFTER_UNIT}{_ADDRESS_TAIL})",
        0.9,
    ),
    # "92597 Jahu 80", "4596 Tylova 285": number, name, number is an address in most scripts' conventions.
    RegexRule(
        "number name number",
        rf"\b(\d{{3,6}}\s+(?:{_CAP}\s+){{1,3}}\d{{1,5}}[A-Za-z]?\b(?![.,:/]\d){_AFTER_UNIT}{_ADDRESS_TAIL})",
        0.86,
    ),
    # "Apt. 902", "Suite 282", "Unit 5022 Box 1225", "P.O. Box 104", "PSC 0272, Box 1651"
    RegexRule(
        "unit",
        rf"\b((?:P\.?\s?O\.?\s+Box|PSC|CMR)\s*\d+(?:,?\s+Box\s+\d+)?|{_UNIT}(?:\s+Box\s+\d+)?)\b",
        0.6,
    ),
    # "the corner of Kuusiku 7 and Alexander Flat": both streets, on one line
    RegexRule(
        "corner",
        rf"\b((?i:the\s+)?(?i:corner)\s+of\s+[^\n,;?!]{{3,60}}?\s+and\s+(?:{_CAP}[ \t]+){{0,3}}{_CAP})",
        0.92,
    ),
    # Military mail: "APO AE 44085", "USNS Saibara"
    RegexRule("military", r"\b((?:APO|FPO|DPO)\s+(?:AA|AE|AP)\s+\d{5}|(?:USNS|USNV|USS|USCGC)\s+[A-Z]\w+)\b", 0.9),
]

_ZIP_RULES = [
    RegexRule(
        "zip after context word",
        r"(?i:zip(?:\s*code)?|postal\s*code|post\s*code|postcode|plz)\s*(?:is|:|#)?\s*"
        r"(\d{4,5}(?:-\d{3,4})?|\d{3}\s\d{2}|[A-Z]\d[A-Z]\s?\d[A-Z]\d)\b",
        0.6,
    ),
    # "CA 94105", "OV 21072": a two-letter state or province code then digits, ending an address line.
    RegexRule("state and zip", r"\b[A-Z]{2},?\s+(\d{5}(?:-\d{4})?)\b", 0.4),
]

_AGE_RULES = [
    RegexRule("n years old", r"\b(\d{1,3})(?:\s|-)?(?:years?|yrs?)(?:\s|-)?old\b", 0.7, re.IGNORECASE),
    RegexRule("n y/o", r"\b(\d{1,3})\s?(?:y/o|yo|y\.o\.)(?!\w)", 0.7, re.IGNORECASE),
    RegexRule("age of n", r"\b(?:age(?:d)?|age of|aged of)\s+(\d{1,3})\b", 0.6, re.IGNORECASE),
    RegexRule(
        "turned n",
        r"\b(?:turn(?:s|ed|ing)?|I'll turn|I am|I'm|he's|she's|is)\s+(\d{1,3})\b"
        r"(?!\s*(?:%|\$|:|\d|[-+*/×x=^]|times\b|plus\b|minus\b|divided\b|multiplied\b|percent\b|per\b))",
        0.35,
        re.IGNORECASE,
    ),
]

_HONORIFIC = r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Madam|Dame|Lord|Lady|Rev|Fr|Hon)"
_TITLE_RULES = [RegexRule("honorific", rf"\b({_HONORIFIC}\.?)(?=\s+{_CAP})", 0.6)]
_PERSON_RULES = [
    RegexRule(
        "name after honorific",
        rf"\b{_HONORIFIC}\.?\s+((?:{_CAP}\s+){{0,2}}[A-ZÀ-ÖØ-Þ][\w'’\-]+)",
        0.7,
    )
]

_DATE_TIME_RULES = [
    # "2012-10-01 00:46:43": spaCy and Presidio stop at the date; the clock time is part of it.
    RegexRule("iso date-time", r"\b((?:1[89]|20)\d\d-[01]\d-[0-3]\d(?:[ T][0-2]?\d:[0-5]\d(?::[0-5]\d)?)?)\b", 0.85),
]

# A phone number: optional +country code, groups of digits (one may be in parentheses) joined by single spaces,
# dots or dashes, optional extension. Whether it is one is decided by the digit count and a context word.
_PHONE = re.compile(
    r"(?<![\w+/.:-])(\+?\(?\d{1,5}\)?(?:[ .\-]?\(?\d{1,5}\)?){1,6}(?:\s?(?:x|ext\.?)\s?\d{1,5})?)(?![\w/:]|[.\-]\d)",
    re.IGNORECASE,
)
_PHONE_CONTEXT = re.compile(
    r"\b(?:phone|telephone|tel|mobile|mob|cell|cellphone|fax|desk|office|home|work|call|calling|called|answering|"
    r"reach|contact|dial|text|sms|whatsapp|registered|number|no)\b",
    re.IGNORECASE,
)
_CARD = re.compile(r"(?<![\w-])(\d{4}(?:[ -]?\d{2,4}){2,4}\d{0,3})(?![\w-])")
_CARD_CONTEXT = re.compile(
    r"\b(?:card|cards|cc|credit|debit|visa|mastercard|amex|maestro|payment|pay|charged|billing)\b", re.IGNORECASE
)
_DATE_LIKE = re.compile(r"\d{4}-\d\d-\d\d|\d\d?[/.]\d\d?[/.]\d{2,4}|\d{1,2}:\d\d")


def phone_candidates(text: str) -> list[tuple[int, int]]:
    """Spans that look like phone numbers (7 to 15 digits, not a date or a clock time) and have a phone context word
    in the 30 characters before or the 12 after them."""
    spans = []
    for match in _PHONE.finditer(text):
        start, end = match.span(1)
        value = match.group(1)
        digits = sum(c.isdigit() for c in value.split("x")[0].split("X")[0].split("ext")[0])
        if not 7 <= digits <= 15 or _DATE_LIKE.search(value) or not re.search(r"\d[ .\-()]*\d", value):
            continue
        if value.isdigit() and digits > 12:
            continue  # one long run of digits: an account or card number more often than a phone
        around = text[max(0, start - 30) : start] + " " + text[end : end + 12]
        if _PHONE_CONTEXT.search(around):
            spans.append((start, end))
    return spans


def card_candidates(text: str) -> list[tuple[int, int]]:
    """Luhn-valid numbers of 12 to 19 digits with a payment-card word in the 40 characters before them (Presidio's
    card recognizer knows only some issuers' prefixes and lengths)."""
    spans = []
    for match in _CARD.finditer(text):
        start, end = match.span(1)
        digits = re.sub(r"\D", "", match.group(1))
        if 12 <= len(digits) <= 19 and luhn_valid(digits) and _CARD_CONTEXT.search(text[max(0, start - 40) : start]):
            spans.append((start, end))
    return spans


_AGE_CONTEXT = ["age", "old", "aged", "years", "birthday", "turned", "turn"]
_ZIP_CONTEXT = ["zip", "postal", "postcode", "address"]
_ADDRESS_CONTEXT = ["address", "live", "lives", "located", "street", "ship", "deliver", "apartment", "suite"]


def _regex_recognizer(entity: str, rules: list[RegexRule], context: list[str], language: str) -> Any:
    """A Presidio recognizer from ``rules``; capture group 1 is the reported span."""
    from presidio_analyzer import AnalysisExplanation, LocalRecognizer, RecognizerResult

    compiled = [(rule, re.compile(rule.regex, rule.flags)) for rule in rules]

    name = f"Slmkit{entity.title().replace('_', '')}Recognizer"

    class SlmkitRegexRecognizer(LocalRecognizer):
        def load(self) -> None:
            pass

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            results = []
            for rule, pattern in compiled:
                for match in pattern.finditer(text):
                    group = 1 if pattern.groups else 0
                    start, end = match.span(group)
                    if start == end:
                        continue
                    explanation = AnalysisExplanation(
                        recognizer=name, original_score=rule.score, pattern_name=rule.name, pattern=rule.regex
                    )
                    results.append(
                        RecognizerResult(
                            entity_type=entity,
                            start=start,
                            end=end,
                            score=rule.score,
                            analysis_explanation=explanation,
                            recognition_metadata={
                                RecognizerResult.RECOGNIZER_NAME_KEY: name,
                                RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                            },
                        )
                    )
            return results

    return SlmkitRegexRecognizer(
        supported_entities=[entity],
        supported_language=language,
        context=context,
        name=name,
    )


def _function_recognizer(entity: str, find: Any, score: float, language: str) -> Any:
    """A Presidio recognizer reporting the spans ``find(text)`` returns, at ``score``."""
    from presidio_analyzer import AnalysisExplanation, LocalRecognizer, RecognizerResult

    name = f"Slmkit{entity.title().replace('_', '')}ContextRecognizer"

    class SlmkitFunctionRecognizer(LocalRecognizer):
        def load(self) -> None:
            pass

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            return [
                RecognizerResult(
                    entity_type=entity,
                    start=start,
                    end=end,
                    score=score,
                    analysis_explanation=AnalysisExplanation(recognizer=name, original_score=score),
                    recognition_metadata={
                        RecognizerResult.RECOGNIZER_NAME_KEY: name,
                        RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                    },
                )
                for start, end in find(text)
            ]

    return SlmkitFunctionRecognizer(supported_entities=[entity], supported_language=language, name=name)


def extra_recognizers(language: str = "en") -> list[Any]:
    """Our recognizers, ready to add to a Presidio ``RecognizerRegistry``."""
    return [
        _regex_recognizer("STREET_ADDRESS", _STREET_RULES, _ADDRESS_CONTEXT, language),
        _regex_recognizer("ZIP_CODE", _ZIP_RULES, _ZIP_CONTEXT, language),
        _regex_recognizer("AGE", _AGE_RULES, _AGE_CONTEXT, language),
        _regex_recognizer("TITLE", _TITLE_RULES, [], language),
        _regex_recognizer("PERSON", _PERSON_RULES, [], language),
        _regex_recognizer("DATE_TIME", _DATE_TIME_RULES, [], language),
        _function_recognizer("PHONE_NUMBER", phone_candidates, 0.6, language),
        _function_recognizer("CREDIT_CARD", card_candidates, 0.6, language),
    ]
