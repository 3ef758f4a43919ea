"""Features of a prompt that do not depend on its topic: length, shape, numbers, code, questions, answer options.

The learned router uses them twice: as inputs next to the prompt's embedding, and to notice a prompt whose shape lies
outside everything it was trained on (e.g. a one-line word problem for a router trained on multiple-choice
questions), where it falls back to its length prior. All are cheap (regular expressions and one token count).
"""

from __future__ import annotations

import math
import re

from slmkit.core.tokens import estimate_tokens

__all__ = ["PROMPT_FEATURES", "prompt_features"]

PROMPT_FEATURES = (
    "log_tokens",
    "log_chars",
    "chars_per_token",
    "log_words",
    "mean_word_length",
    "log_longest_word",
    "log_lines",
    "log_longest_line",
    "digit_share",
    "log_numbers",
    "math_share",
    "question_marks",
    "log_question_words",
    "log_negations",
    "log_code_markers",
    "log_options",
    "log_option_chars",
    "log_option_spread",
    "log_stem_chars",
    "upper_share",
    "log_pipes",
)
"""Names of the values :func:`prompt_features` returns, in order."""

_WORD = re.compile(r"\w+")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_MATH = re.compile(r"[=+\-*/^<>√∑∫πθλ%]")
_QUESTION_WORD = re.compile(r"\b(?:what|which|who|whom|whose|when|where|why|how)\b", re.IGNORECASE)
_NEGATION = re.compile(r"\b(?:not|no|never|except|least|false|incorrect)\b", re.IGNORECASE)
_CODE = re.compile(
    r"```|^\s*(?:def|class|import|return|#include|public|function|for|while|if)\b.*[:{(]\s*$|[{};]\s*$|=>|::|\w\(\)",
    re.MULTILINE,
)
# an answer option is a line "A. ...", "A) ..." or "(a) ..."; "A: ..." is an answer (a Q:/A: dialogue), not an option
_OPTION = re.compile(r"^[ \t]*(?:\(?[A-Ha-h]\)|[A-H]\.)[ \t]+(\S.*)$", re.MULTILINE)


def prompt_features(prompt: str) -> list[float]:
    """Topic-independent values of one prompt, named by :data:`PROMPT_FEATURES`."""
    n = max(len(prompt), 1)
    tokens = estimate_tokens(prompt)
    words = _WORD.findall(prompt)
    lines = prompt.splitlines() or [""]
    options = [m.group(1) for m in _OPTION.finditer(prompt)]
    first_option = _OPTION.search(prompt)
    option_lengths = [len(o) for o in options]
    mean_option = sum(option_lengths) / len(options) if options else 0.0
    spread = math.sqrt(sum((x - mean_option) ** 2 for x in option_lengths) / len(options)) if options else 0.0
    return [
        math.log1p(tokens),
        math.log1p(len(prompt)),
        len(prompt) / max(tokens, 1),
        math.log1p(len(words)),
        sum(len(w) for w in words) / len(words) if words else 0.0,
        math.log1p(max((len(w) for w in words), default=0)),
        math.log1p(len(lines)),
        math.log1p(max(len(line) for line in lines)),
        sum(c.isdigit() for c in prompt) / n,
        math.log1p(len(_NUMBER.findall(prompt))),
        len(_MATH.findall(prompt)) / n,
        float(min(prompt.count("?"), 5)),
        math.log1p(len(_QUESTION_WORD.findall(prompt))),
        math.log1p(len(_NEGATION.findall(prompt))),
        math.log1p(len(_CODE.findall(prompt))),
        math.log1p(len(options)),
        math.log1p(mean_option),
        math.log1p(spread),
        math.log1p(first_option.start() if first_option else len(prompt)),
        sum(c.isupper() for c in prompt) / n,
        math.log1p(prompt.count("|")),
    ]
