"""Does PIIGuard's gain over vanilla Presidio hold on sentences from templates it was not fitted on?

Presidio's synthetic set is generated from templates ("have you heard {{PERSON}} speak yet?"); held-out sentences of
the same generator bring new values and, for a fitted detector, possibly new templates. Here every sentence belongs
to a group and each group is predicted by a guard whose fitted part was chosen on the other groups only:

    groups: "mix"      templates grouped by entity mix: each template goes to the rarest entity type it contains
                       (what the template is about; "none" for templates without PII), types with fewer than
                       MIN_GROUP sentences pooled into "rare types"  -> leave-one-group-out, worst group reported
            "template" the data set's template ids, in 10 folds  -> pooled figure
    fitted part: score thresholds, three ways: none (the guard's 0.35 for every type), one threshold for every
                 type, or one per entity type (1.01 = never report the type; coordinate ascent from 0.35), each
                 maximising token-level F2 on the training groups; the guard's default is the way that did best
                 on the left-out groups
    baseline:    vanilla Presidio (``vanilla_analyzer_engine``: default configuration and recognizers, small spaCy
                 model), interleaved per sentence with PIIGuard in the same run; time per sentence for both

Scoring is ``pii_presidio_synth.score``: tokens, IO scheme, system outputs mapped onto the data set's labels
(``LOCATION -> GPE``, ``URL -> DOMAIN_NAME``). The recognizers themselves (regular expressions, context rules) were
written looking at the whole dev set, so they are not refitted per fold: leaving groups out measures the fitted
thresholds, and ``presidio_generated_small.json`` (other templates, other annotation habits) is the check on them.

    python benchmarks/pii_generalise.py                       # dev set: run both systems, then leave groups out
    python benchmarks/pii_generalise.py --reuse               # refit from the cached detections
    python benchmarks/pii_generalise.py --fit                 # also print thresholds fitted on all groups
    python benchmarks/pii_generalise.py --data ../shared/data/pii/presidio_generated_small.json --no-logo
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pii_presidio_synth import GOLD_ALIASES, PREDICTION_TO_GOLD, PRESIDIO_SUPPORTED, score, token_labels

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "pii" / "presidio_synth_dev.json"
MIN_GROUP = 20
GRID = (0.01, 0.1, 0.2, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 1.01)
START = 0.35
FITTING = ("none", "global", "per type")
"""What is fitted on the training groups: nothing (0.35 for every type), one threshold, or one per type."""
Finding = tuple[int, int, str, float, str]  # start, end, entity type (Presidio's name), score, recognizer


# -- data -----------------------------------------------------------------------------------------------------------
def load(path: Path) -> tuple[list[dict], list[list[str]]]:
    samples = json.loads(path.read_text())
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
    return samples, gold


def template_key(sample: dict) -> str:
    """The template a sentence came from: its id, else its text with every span replaced by its type."""
    if sample.get("template_id") is not None:
        return str(sample["template_id"])
    text = sample["full_text"]
    for x in sorted(sample["spans"], key=lambda x: -x["start_position"]):
        text = text[: x["start_position"]] + "{{" + x["entity_type"] + "}}" + text[x["end_position"] :]
    return text


def mix_groups(samples: Sequence[dict]) -> list[str]:
    """Each sentence's entity-mix group: the rarest entity type of its template (see the module docstring)."""
    frequency = Counter(GOLD_ALIASES.get(x["entity_type"], x["entity_type"]) for s in samples for x in s["spans"])
    types: dict[str, set[str]] = defaultdict(set)
    for s in samples:
        types[template_key(s)] |= {GOLD_ALIASES.get(x["entity_type"], x["entity_type"]) for x in s["spans"]}
    rarest = {t: min(v, key=lambda e: (frequency[e], e)) if v else "none" for t, v in types.items()}
    groups = [rarest[template_key(s)] for s in samples]
    sizes = Counter(groups)
    return [g if sizes[g] >= MIN_GROUP else "rare types" for g in groups]


def template_folds(samples: Sequence[dict], k: int = 10) -> list[str]:
    """Templates dealt round-robin into ``k`` folds, largest first (sizes stay even)."""
    sizes = Counter(template_key(s) for s in samples)
    fold = {t: f"fold {i % k}" for i, (t, _) in enumerate(sorted(sizes.items(), key=lambda x: (-x[1], x[0])))}
    return [fold[template_key(s)] for s in samples]


# -- running the systems --------------------------------------------------------------------------------------------
def detect_all(samples: Sequence[dict]) -> dict[str, Any]:
    """Vanilla Presidio's results and PIIGuard's candidates per sentence, and both systems' time per sentence."""
    from slmkit.guards import PIIGuard
    from slmkit.guards.pii import select_findings
    from slmkit.guards.presidio_engine import vanilla_analyzer_engine

    vanilla = vanilla_analyzer_engine()
    guard = PIIGuard()
    guard.detect(samples[0]["full_text"])  # load models before timing
    vanilla.analyze(samples[0]["full_text"], language="en")
    out: dict[str, Any] = {"spacy_model": guard.spacy_model, "vanilla": [], "candidates": [], "ms": {}}
    ms: dict[str, list[float]] = {"vanilla": [], "guard": []}
    for sample in samples:
        text = sample["full_text"]
        start = time.perf_counter()
        results = vanilla.analyze(text, language="en")
        ms["vanilla"].append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        candidates = guard.candidates(text)
        select_findings(candidates, guard.config.thresholds, guard.config.score_threshold)  # = guard.detect(text)
        ms["guard"].append((time.perf_counter() - start) * 1000)
        out["vanilla"].append([(r.start, r.end, r.entity_type, float(r.score), "") for r in results])
        out["candidates"].append([(f.start, f.end, f.entity_type, f.score, f.recognizer) for f in candidates])
    out["ms"] = ms
    return out


def select(
    candidates: Sequence[Finding], thresholds: dict[str, float], default: float = START
) -> list[tuple[int, int, str, float]]:
    from slmkit.guards.pii import select_findings
    from slmkit.guards.report import PIIFinding

    findings = [PIIFinding(start=a, end=b, entity_type=t, score=p, recognizer=r) for a, b, t, p, r in candidates]
    return [(f.start, f.end, f.entity_type, f.score) for f in select_findings(findings, thresholds, default)]


def labels(text: str, spans: Sequence[tuple[int, int, str, float]]) -> list[str]:
    return token_labels(text, [(a, b, PREDICTION_TO_GOLD.get(t, t), p) for a, b, t, p in spans])


# -- fitting --------------------------------------------------------------------------------------------------------
class Fitter:
    """Coordinate ascent on per-type thresholds; only the sentences with candidates of the type being moved are
    re-labelled."""

    def __init__(self, samples: Sequence[dict], gold: Sequence[list[str]], candidates: Sequence[list[Finding]]):
        self.texts = [s["full_text"] for s in samples]
        self.gold = gold
        self.candidates = candidates
        gold_types = {g for row in gold for g in row if g != "O"}
        predicted = {t for row in candidates for _, _, t, _, _ in row}
        # Only types the data labels (after mapping) are fitted: a type it never labels could only be switched off.
        self.types = sorted(t for t in predicted if PREDICTION_TO_GOLD.get(t, t) in gold_types)
        self.by_type = {t: [i for i, row in enumerate(candidates) if any(c[2] == t for c in row)] for t in self.types}

    def counts(self, i: int, thresholds: dict[str, float], default: float = START) -> Counter[str]:
        pred = labels(self.texts[i], select(self.candidates[i], thresholds, default))
        c: Counter[str] = Counter()
        for g, p in zip(self.gold[i], pred, strict=True):
            if g != "O" and p == g:
                c["tp"] += 1
            else:
                c["fp"] += p != "O"
                c["fn"] += g != "O"
        return c

    def fit_global(self, train: Sequence[int]) -> float:
        """The one threshold for every type that maximises F2 on ``train`` (ties: the guard's 0.35)."""
        best, best_value = -1.0, START
        for value in sorted(GRID, key=lambda v: v != START):
            c = sum((self.counts(i, {}, value) for i in train), Counter())
            f2 = 5 * c["tp"] / (5 * c["tp"] + 4 * c["fn"] + c["fp"]) if c["tp"] else 0.0
            if f2 > best + 1e-9:
                best, best_value = f2, value
        return best_value

    def fit(self, train: Sequence[int]) -> dict[str, float]:
        thresholds = dict.fromkeys(self.types, START)
        train_set = set(train)
        per = {i: self.counts(i, thresholds) for i in train}
        total = sum(per.values(), Counter())

        def f2(c: Counter[str]) -> float:
            tp, fp, fn = c["tp"], c["fp"], c["fn"]
            return 5 * tp / (5 * tp + 4 * fn + fp) if tp else 0.0

        for _ in range(2):
            changed = False
            for t in self.types:
                rows = [i for i in self.by_type[t] if i in train_set]
                if not rows:
                    continue
                base = sum((per[i] for i in rows), Counter())
                rest = total - base
                best, best_value, best_counts = f2(total), thresholds[t], None
                for value in GRID:
                    if value == thresholds[t]:
                        continue
                    trial = {**thresholds, t: value}
                    counts = {i: self.counts(i, trial) for i in rows}
                    score_ = f2(rest + sum(counts.values(), Counter()))
                    if score_ > best + 1e-9:
                        best, best_value, best_counts = score_, value, counts
                if best_counts is not None:
                    thresholds[t] = best_value
                    per.update(best_counts)
                    total = sum(per.values(), Counter())
                    changed = True
            if not changed:
                break
        return {t: v for t, v in thresholds.items() if v != START}


# -- reporting ------------------------------------------------------------------------------------------------------
def evaluate(gold: Sequence[list[str]], pred: Sequence[list[str]]) -> dict:
    return {
        "all_labels": score(list(gold), list(pred)),
        "supported": score(list(gold), list(pred), keep=PRESIDIO_SUPPORTED.__contains__),
    }


def leave_groups_out(
    fitter: Fitter, groups: Sequence[str], vanilla_pred: Sequence[list[str]], how: str
) -> dict[str, Any]:
    """Each group predicted with thresholds fitted on the others (``how``: "per type", "global" or "none");
    predictions in sentence order."""
    pred: list[list[str] | None] = [None] * len(groups)
    per_group = {}
    fitted: dict[str, Any] = {}
    for g in sorted(set(groups)):
        test = [i for i, x in enumerate(groups) if x == g]
        train = [i for i, x in enumerate(groups) if x != g]
        thresholds: dict[str, float] = {}
        default = START
        if how == "per type":
            thresholds = fitter.fit(train)
        elif how == "global":
            default = fitter.fit_global(train)
        fitted[g] = {"thresholds": thresholds, "score_threshold": default}
        for i in test:
            pred[i] = labels(fitter.texts[i], select(fitter.candidates[i], thresholds, default))
        gold_g = [fitter.gold[i] for i in test]
        ours = score(gold_g, [pred[i] for i in test])  # type: ignore[misc]
        base = score(gold_g, [vanilla_pred[i] for i in test])
        per_group[g] = {
            "sentences": len(test),
            "gold_tokens": ours["overall"]["tokens"],
            "ours": ours["overall"],
            "ours_any": ours["any_pii"],
            "vanilla": base["overall"],
            "vanilla_any": base["any_pii"],
        }
    return {"pred": pred, "per_group": per_group, "fitted": fitted}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "pii_generalise.json")
    parser.add_argument("--reuse", action="store_true", help="reuse the detections cached by an earlier run")
    parser.add_argument("--fit", action="store_true", help="print thresholds fitted on every group")
    parser.add_argument("--no-logo", action="store_true", help="only score the guard's defaults (no fitting)")
    parser.add_argument(
        "--report-fitting", choices=FITTING, default="none", help="whose left-out groups and entities are tabled"
    )
    args = parser.parse_args()

    samples, gold = load(args.data)
    cache = args.out.with_suffix(".detections.json")
    if args.reuse and cache.exists():
        detections = json.loads(cache.read_text())
    else:
        detections = detect_all(samples)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(detections))
    from slmkit.guards import PIIGuardConfig

    defaults = PIIGuardConfig()
    texts = [s["full_text"] for s in samples]
    vanilla_pred = [labels(t, [r[:4] for r in rows]) for t, rows in zip(texts, detections["vanilla"], strict=True)]
    candidates = [[tuple(c) for c in row] for row in detections["candidates"]]
    default_pred = [
        labels(t, select(c, defaults.thresholds, defaults.score_threshold))
        for t, c in zip(texts, candidates, strict=True)
    ]
    flat_pred = [labels(t, select(c, {})) for t, c in zip(texts, candidates, strict=True)]
    ms = detections["ms"]
    results: dict[str, Any] = {
        "data": str(args.data),
        "samples": len(samples),
        "spacy_model": detections["spacy_model"],
        "ms_per_sentence": {
            k: {"mean": round(statistics.fmean(v), 2), "median": round(statistics.median(v), 2)} for k, v in ms.items()
        },
        "vanilla": evaluate(gold, vanilla_pred),
        "guard_defaults": evaluate(gold, default_pred),
        "guard_no_fitted_thresholds": evaluate(gold, flat_pred),
        "report_fitting": args.report_fitting,
    }
    results["time_ratio_mean"] = round(statistics.fmean(ms["guard"]) / statistics.fmean(ms["vanilla"]), 3)
    results["time_ratio_median_of_ratios"] = round(
        statistics.median(g / v for g, v in zip(ms["guard"], ms["vanilla"], strict=True)), 3
    )
    if not args.no_logo:
        fitter = Fitter(samples, gold, candidates)
        for name, groups in (("mix", mix_groups(samples)), ("template", template_folds(samples))):
            for how in FITTING:
                run = leave_groups_out(fitter, groups, vanilla_pred, how)
                results[f"logo_{name}_{how}"] = {
                    "pooled": evaluate(gold, run["pred"]),
                    "per_group": run["per_group"],
                    "fitted": run["fitted"],
                }
        if args.fit:
            every = range(len(samples))
            results["fitted_on_all"] = {"per type": fitter.fit(every), "global": fitter.fit_global(every)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(markdown(results))


def _prf(m: dict) -> str:
    return f"{m['precision']} / {m['recall']} / **{m['f2']}**"


def markdown(results: dict) -> str:
    v, d = results["vanilla"], results["guard_defaults"]
    ms = results["ms_per_sentence"]
    lines = [
        f"{results['samples']} sentences from {Path(results['data']).name}; PIIGuard on {results['spacy_model']}; "
        "token level, IO scheme, the data set's labels.",
        "",
        f"Time per sentence (same run, interleaved): vanilla {ms['vanilla']['mean']} ms mean / "
        f"{ms['vanilla']['median']} median, PIIGuard {ms['guard']['mean']} / {ms['guard']['median']}: ratio of means "
        f"{results['time_ratio_mean']}x, median per-sentence ratio {results['time_ratio_median_of_ratios']}x.",
        "",
        "| system | all labels P / R / F2 | any PII P / R / F2 | labels Presidio has P / R / F2 |",
        "|---|---|---|---|",
    ]
    rows = [("vanilla Presidio", v), ("PIIGuard() defaults", d)]
    rows.append(("PIIGuard, one threshold 0.35 (nothing fitted)", results["guard_no_fitted_thresholds"]))
    for name in ("mix", "template"):
        for how in FITTING:
            if f"logo_{name}_{how}" in results:
                label = f"PIIGuard, leave-one-{name}-group-out, fitted: {how} (pooled)"
                rows.append((label, results[f"logo_{name}_{how}"]["pooled"]))
    for label, r in rows:
        lines.append(
            f"| {label} | {_prf(r['all_labels']['overall'])} | {_prf(r['all_labels']['any_pii'])} "
            f"| {_prf(r['supported']['overall'])} |"
        )
    for name in ("mix", "template"):
        key = f"logo_{name}_{results.get('report_fitting', 'none')}"
        if key not in results:
            continue
        per = results[key]["per_group"]
        lines += [
            "",
            f"Left-out groups ({name}, fitted: {results.get('report_fitting', 'none')}): F2, all labels (any PII)",
            "",
            "| left-out group | sentences | gold tokens | vanilla F2 | PIIGuard F2 | gain |",
            "|---|---|---|---|---|---|",
        ]
        for g, m in sorted(per.items(), key=lambda x: x[1]["ours"]["f2"]):
            lines.append(
                f"| {g} | {m['sentences']} | {m['gold_tokens']} | {m['vanilla']['f2']} ({m['vanilla_any']['f2']}) "
                f"| {m['ours']['f2']} ({m['ours_any']['f2']}) | {m['ours']['f2'] - m['vanilla']['f2']:+.3f} |"
            )
        scored = {g: m for g, m in per.items() if m["gold_tokens"]}
        worst = min(scored, key=lambda g: scored[g]["ours"]["f2"])
        worst_gain = min(scored, key=lambda g: scored[g]["ours"]["f2"] - scored[g]["vanilla"]["f2"])
        lines.append(
            f"\nWorst left-out group: {worst} (PIIGuard {scored[worst]['ours']['f2']} vs vanilla "
            f"{scored[worst]['vanilla']['f2']}); smallest gain: {worst_gain} "
            f"({scored[worst_gain]['ours']['f2'] - scored[worst_gain]['vanilla']['f2']:+.3f})."
        )
    key = f"logo_mix_{results.get('report_fitting', 'none')}"
    pooled = results[key]["pooled"]["all_labels"]["per_entity"] if key in results else d["all_labels"]["per_entity"]
    label = "PIIGuard left-one-mix-group-out" if key in results else "PIIGuard defaults"
    lines += ["", f"| entity (gold tokens) | vanilla P / R / F2 | {label} P / R / F2 |", "|---|---|---|"]
    for entity, m in sorted(pooled.items(), key=lambda x: -x[1]["tokens"]):
        b = v["all_labels"]["per_entity"].get(entity, {"precision": 0.0, "recall": 0.0, "f2": 0.0})
        lines.append(f"| {entity} ({m['tokens']}) | {b['precision']} / {b['recall']} / {b['f2']} | {_prf(m)} |")
    if "fitted_on_all" in results:
        lines += ["", f"Thresholds fitted on all groups: {json.dumps(results['fitted_on_all'], sort_keys=True)}"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
