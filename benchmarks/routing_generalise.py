"""Does the learned router generalise? Whole MMLU subject groups left out, and proxies for another kind of task.

Data as in routing_routellm.py: RouteLLM's MMLU set (weak Mixtral-8x7B, strong GPT-4-1106; contaminated prompts
excluded), label 1 = weak wrong and strong right. The router is ``slmkit.routing.LearnedRouter`` with its defaults
and the default embedder (static MiniLM table, ``zipf``); the baseline is prompt length in tiktoken tokens (longer ->
strong), the prior the router falls back to; random is seeded.

Groups: MMLU's own categories (hendrycks/test ``categories.py``): STEM, humanities, social sciences, other
(business, health, misc.). Evaluations:

- ``groups``: leave one group out (train on the other three, score the left-out one); per group the APGR of the
  router, of its learned part alone (no fallback), of length and of random, a 90% paired-bootstrap interval of
  router - length, and the pooled out-of-group APGR;
- ``options stripped`` (another format): the left-out group's prompts cut to the question (answer options and
  "Answer:" removed), scored by the same router trained on full prompts; labels unchanged;
- ``one subject at a time`` (one homogeneous task, the situation of a held-out benchmark of a single kind):
  the left-out group's scores ranked within each subject, so that only the order inside a subject counts;
- ``stratified`` / ``subjects``: 5 folds stratified by subject / grouped by subject, as in routing_routellm.py;
- ``selection``: the blend's settings (learned_weight, length_slope, novelty_ramp, shape_tail) on a grid, every
  point scored on the leave-one-group-out parts (the blend is recomputed from each prompt's parts, no refit). The
  rule that chose the router's defaults: the largest worst-group margin over length (margins within 0.001 equal,
  then the higher pooled APGR). The nested figure shows what that selection is worth on a group it has not seen:
  for each left-out group the setting is chosen among the other three groups only (inner folds train on two
  groups), then applied to the left-out group (also for two other rules, for comparison).

Prompt features are cached per prompt text inside this process (14k prompts, ~25 fits).

    python benchmarks/routing_generalise.py [--data ../shared/data/routing] [--no-nested]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import re
import time
from pathlib import Path

import numpy as np
from routing_routellm import load
from sklearn.model_selection import GroupKFold, StratifiedKFold

import slmkit.routing.learned as learned_module
from slmkit.core.tokens import estimate_tokens
from slmkit.routing import LearnedRouter
from slmkit.routing.embedding import default_router_embeddings, embed_texts
from slmkit.routing.evaluation import apgr

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"

SUBCATEGORY = {
    "abstract_algebra": "math", "anatomy": "health", "astronomy": "physics", "business_ethics": "business",
    "clinical_knowledge": "health", "college_biology": "biology", "college_chemistry": "chemistry",
    "college_computer_science": "computer science", "college_mathematics": "math", "college_medicine": "health",
    "college_physics": "physics", "computer_security": "computer science", "conceptual_physics": "physics",
    "econometrics": "economics", "electrical_engineering": "engineering", "elementary_mathematics": "math",
    "formal_logic": "philosophy", "global_facts": "other", "high_school_biology": "biology",
    "high_school_chemistry": "chemistry", "high_school_computer_science": "computer science",
    "high_school_european_history": "history", "high_school_geography": "geography",
    "high_school_government_and_politics": "politics", "high_school_macroeconomics": "economics",
    "high_school_mathematics": "math", "high_school_microeconomics": "economics", "high_school_physics": "physics",
    "high_school_psychology": "psychology", "high_school_statistics": "math", "high_school_us_history": "history",
    "high_school_world_history": "history", "human_aging": "health", "human_sexuality": "culture",
    "international_law": "law", "jurisprudence": "law", "logical_fallacies": "philosophy",
    "machine_learning": "computer science", "management": "business", "marketing": "business",
    "medical_genetics": "health", "miscellaneous": "other", "moral_disputes": "philosophy",
    "moral_scenarios": "philosophy", "nutrition": "health", "philosophy": "philosophy", "prehistory": "history",
    "professional_accounting": "other", "professional_law": "law", "professional_medicine": "health",
    "professional_psychology": "psychology", "public_relations": "politics", "security_studies": "politics",
    "sociology": "culture", "us_foreign_policy": "politics", "virology": "health", "world_religions": "philosophy",
}  # fmt: skip
CATEGORIES = {
    "STEM": ["physics", "chemistry", "biology", "computer science", "math", "engineering"],
    "humanities": ["history", "philosophy", "law"],
    "social sciences": ["politics", "culture", "economics", "geography", "psychology"],
    "other": ["other", "business", "health"],
}
CATEGORY = {sub: name for name, subs in CATEGORIES.items() for sub in subs}
GRID = {
    "learned_weight": [0.0, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 1.0],
    "length_slope": [0.3, 0.6, 1.0, 1.5],
    "novelty_ramp": [(0.0, 0.0), (0.0, 0.05), (0.0, 0.2), (0.05, 0.3)],
    "shape_tail": [0.0, 0.002, 0.005, 0.01, 0.02, 0.05],
}
_OPTIONS = re.compile(r"\n[ \t]*A\.[ \t]")


def strip_options(prompt: str) -> str:
    """The question alone: MMLU's answer options (from the line "A. ...") and the closing "Answer:" removed."""
    m = _OPTIONS.search(prompt)
    return (prompt[: m.start()] if m else prompt.removesuffix("Answer:")).strip()


def within(scores: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Scores replaced by their rank inside each key (0-1), so that only the order within a key counts."""
    from scipy.stats import rankdata

    out = np.empty(len(scores))
    for key in np.unique(keys):
        rows = keys == key
        out[rows] = (rankdata(scores[rows]) - 0.5) / rows.sum()
    return out


def logit(p: np.ndarray | float) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-4, 1 - 1e-4)
    return np.log(q / (1 - q))


def ramp(value: np.ndarray, low: float, high: float) -> np.ndarray:
    return (value > low).astype(float) if high <= low else np.clip((value - low) / (high - low), 0.0, 1.0)


def blend(parts: dict[str, np.ndarray], setting: dict[str, object]) -> np.ndarray:
    """The router's score of each prompt under another setting, from its parts (mirrors LearnedRouter._score)."""
    prior = parts["base_logit"] + setting["length_slope"] * (parts["log_tokens"] - parts["train_log_tokens"])
    low, high = setting["novelty_ramp"]  # type: ignore[misc]
    weight = (
        setting["learned_weight"]
        * ramp(parts["similarity_percentile"], low, high)
        * ramp(parts["shape_tail"], 0.0, setting["shape_tail"])  # type: ignore[arg-type]
    )
    return 1 / (1 + np.exp(-((1 - weight) * prior + weight * logit(parts["learned"]))))


class Data:
    def __init__(self, root: Path) -> None:
        subjects, self.prompts, self.weak, self.strong = load(root)
        self.subjects = np.asarray(subjects)
        self.groups = np.asarray([CATEGORY[SUBCATEGORY[s]] for s in subjects])
        self.labels = (~self.weak & self.strong).astype(int)
        self.stripped = [strip_options(p) for p in self.prompts]
        embedder = default_router_embeddings()
        self.vectors = embed_texts(embedder, self.prompts)
        self.stripped_vectors = embed_texts(embedder, self.stripped)
        self.tokens = np.asarray([estimate_tokens(p) for p in self.prompts], dtype=float)
        self.stripped_tokens = np.asarray([estimate_tokens(p) for p in self.stripped], dtype=float)

    def fit(self, train: np.ndarray, **options: object) -> LearnedRouter:
        router = LearnedRouter(**options)  # type: ignore[arg-type]
        return router.fit([self.prompts[i] for i in train], self.labels[train], vectors=self.vectors[train])

    def parts(self, router: LearnedRouter, train: np.ndarray, test: np.ndarray, stripped: bool = False) -> dict:
        prompts, vectors, tokens = (
            (self.stripped, self.stripped_vectors, self.stripped_tokens)
            if stripped
            else (self.prompts, self.vectors, self.tokens)
        )
        parts = router.parts([prompts[i] for i in test], vectors=vectors[test])
        parts |= {
            "base_logit": logit(self.labels[train].mean()),
            "log_tokens": np.log1p(tokens[test]),
            "train_log_tokens": float(np.log1p(self.tokens[train]).mean()),
        }
        default = {k: getattr(router, k) for k in GRID}
        assert np.allclose(blend(parts, default), parts["score"], atol=1e-6), "blend() no longer mirrors the router"
        return parts

    def apgr(self, scores: np.ndarray, rows: np.ndarray) -> float:
        return apgr(scores, self.weak[rows], self.strong[rows])


def leave_groups_out(data: Data, rows: np.ndarray, groups: list[str]) -> dict[str, dict]:
    """Fit on ``rows`` minus each group in turn; the parts of the left-out group (full and options stripped)."""
    out = {}
    for group in groups:
        test = rows[data.groups[rows] == group]
        train = rows[data.groups[rows] != group]
        started = time.perf_counter()
        router = data.fit(train)
        out[group] = {
            "test": test,
            "full": data.parts(router, train, test),
            "stripped": data.parts(router, train, test, stripped=True),
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(f"  left out {group}: {len(test)} prompts, fit + score {out[group]['seconds']} s", flush=True)
    return out


def margin_interval(
    data: Data, scores: np.ndarray, baseline: np.ndarray, rows: np.ndarray, n: int = 300
) -> list[float]:
    """90% paired-bootstrap interval (prompts resampled, seed 0) of APGR(scores) - APGR(baseline) on ``rows``."""
    rng = np.random.default_rng(0)
    weak, strong, margins = data.weak[rows], data.strong[rows], []
    for _ in range(n):
        i = rng.integers(0, len(rows), len(rows))
        margins.append(apgr(scores[i], weak[i], strong[i]) - apgr(baseline[i], weak[i], strong[i]))
    return [float(q) for q in np.quantile(margins, [0.05, 0.95])]


def settings() -> list[dict[str, object]]:
    keys = list(GRID)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*GRID.values())]


def evaluate_setting(data: Data, folds: dict[str, dict], setting: dict[str, object]) -> dict[str, object]:
    per_group, pooled_rows, pooled_scores, margin = {}, [], [], []
    for group, fold in folds.items():
        scores = blend(fold["full"], setting)
        value, length = data.apgr(scores, fold["test"]), data.apgr(data.tokens[fold["test"]], fold["test"])
        per_group[group] = value
        margin.append(value - length)
        pooled_rows.append(fold["test"])
        pooled_scores.append(scores)
    rows = np.concatenate(pooled_rows)
    return {
        "per_group": per_group,
        "pooled": data.apgr(np.concatenate(pooled_scores), rows),
        "worst_margin": float(min(margin)),
        "mean_margin": float(np.mean(margin)),
    }


CRITERIA = {
    # the rule: the worst left-out group beats length by the most ("never worse than the rule it replaces");
    # margins within 0.001 count as equal, and then the higher pooled APGR wins
    "worst margin": lambda r: (round(float(r["worst_margin"]), 3), float(r["pooled"])),
    # reported for comparison in the nested evaluation only
    "mean margin": lambda r: (round(float(r["mean_margin"]), 3), float(r["pooled"])),
    "pooled": lambda r: (round(float(r["pooled"]), 3), float(r["worst_margin"])),
}


def choose(
    data: Data, folds: dict[str, dict], criterion: str = "worst margin"
) -> tuple[dict[str, object], dict[str, object]]:
    """The grid setting that is best on the left-out groups of ``folds`` by ``criterion``."""
    scored = [(s, evaluate_setting(data, folds, s)) for s in settings()]
    return max(scored, key=lambda item: CRITERIA[criterion](item[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "routing")
    parser.add_argument("--no-nested", action="store_true", help="skip the nested selection (12 more fits)")
    args = parser.parse_args()
    learned_module.prompt_features = functools.lru_cache(maxsize=None)(learned_module.prompt_features)  # type: ignore[assignment]

    started = time.perf_counter()
    data = Data(args.data)
    rows = np.arange(len(data.prompts))
    names = list(CATEGORIES)
    rng = np.random.default_rng(0)
    random = rng.random(len(rows))
    counts = dict(zip(*np.unique(data.groups, return_counts=True), strict=True))
    print(f"{len(rows)} prompts, label-1 share {data.labels.mean():.3f}; groups: {counts}")
    results: dict[str, object] = {"n": len(rows), "defaults": {k: getattr(LearnedRouter(), k) for k in GRID}}

    print("leave one group out (defaults)")
    folds = leave_groups_out(data, rows, names)
    table, pooled = [], {"router": [], "learned part": [], "length": [], "random": []}
    for group, fold in folds.items():
        test, full, stripped = fold["test"], fold["full"], fold["stripped"]
        row = {
            "group": group,
            "n": len(test),
            "weak_accuracy": float(data.weak[test].mean()),
            "strong_accuracy": float(data.strong[test].mean()),
            "router": data.apgr(full["score"], test),
            "learned_part": data.apgr(full["learned"], test),
            "length": data.apgr(data.tokens[test], test),
            "random": data.apgr(random[test], test),
            "mean_weight": float(full["weight"].mean()),
            "stripped_router": data.apgr(stripped["score"], test),
            "stripped_learned_part": data.apgr(stripped["learned"], test),
            "stripped_length": data.apgr(data.stripped_tokens[test], test),
            "stripped_mean_weight": float(stripped["weight"].mean()),
            "margin_interval": margin_interval(data, full["score"], data.tokens[test], test),
        }
        subject = data.subjects[test]
        for key, scores in (
            ("router", full["score"]),
            ("learned_part", full["learned"]),
            ("length", data.tokens[test]),
        ):
            row[f"within_subject_{key}"] = data.apgr(within(scores, subject), test)
        table.append(row)
        for key, scores in (
            ("router", full["score"]),
            ("learned part", full["learned"]),
            ("length", data.tokens[test]),
            ("random", random[test]),
        ):
            pooled[key].append(scores)
        print(json.dumps(row), flush=True)
    order = np.concatenate([fold["test"] for fold in folds.values()])
    results["groups"] = table
    results["groups_pooled"] = {k: data.apgr(np.concatenate(v), order) for k, v in pooled.items()}
    within_all = {}
    for key, part in (("router", "score"), ("learned part", "learned")):
        scores = np.concatenate([fold["full"][part] for fold in folds.values()])
        within_all[key] = data.apgr(within(scores, data.subjects[order]), order)
    within_all["length"] = data.apgr(within(data.tokens[order], data.subjects[order]), order)
    within_all["random"] = data.apgr(within(random[order], data.subjects[order]), order)
    results["within_subject_pooled"] = within_all
    stripped_pooled = {
        "router": data.apgr(np.concatenate([fold["stripped"]["score"] for fold in folds.values()]), order),
        "learned part": data.apgr(np.concatenate([fold["stripped"]["learned"] for fold in folds.values()]), order),
        "length": data.apgr(data.stripped_tokens[order], order),
    }
    results["stripped_pooled"] = stripped_pooled
    print(
        "pooled",
        json.dumps(results["groups_pooled"]),
        "within",
        json.dumps(within_all),
        "stripped",
        json.dumps(stripped_pooled),
    )

    print("grid of settings on the leave-one-group-out parts")
    grid = [{"setting": s, **evaluate_setting(data, folds, s)} for s in settings()]
    results["grid"] = grid
    best_setting, best = choose(data, folds)
    results["grid_best"] = {"setting": best_setting, **best}
    print("best by worst margin over length:", json.dumps(results["grid_best"], default=str))

    if not args.no_nested:
        print("nested: setting chosen on the other three groups only")
        nested: dict[str, dict] = {criterion: {} for criterion in CRITERIA}
        for outer in names:
            inner_rows = rows[data.groups != outer]
            inner = leave_groups_out(data, inner_rows, [g for g in names if g != outer])
            fold = folds[outer]
            for criterion in CRITERIA:
                setting, _ = choose(data, inner, criterion)
                nested[criterion][outer] = {
                    "setting": setting,
                    "apgr": data.apgr(blend(fold["full"], setting), fold["test"]),
                    "stripped_apgr": data.apgr(blend(fold["stripped"], setting), fold["test"]),
                    "scores": blend(fold["full"], setting),
                }
                print(
                    f"  {outer}, {criterion}: chose {setting}, APGR {nested[criterion][outer]['apgr']:.3f}", flush=True
                )
        results["nested"] = {}
        for criterion, per_group in nested.items():
            scores = np.concatenate([per_group[g].pop("scores") for g in names])
            results["nested"][criterion] = {"per_group": per_group, "pooled": data.apgr(scores, order)}

    for kind, splitter in (
        ("stratified", StratifiedKFold(5, shuffle=True, random_state=0).split(rows, data.subjects)),
        ("subjects", GroupKFold(5).split(rows, data.subjects, groups=data.subjects)),
    ):
        scores, learned, per_fold = np.zeros(len(rows)), np.zeros(len(rows)), []
        for train, test in splitter:
            router = data.fit(train)
            parts = router.parts([data.prompts[i] for i in test], vectors=data.vectors[test])
            scores[test], learned[test] = parts["score"], parts["learned"]
            per_fold.append((data.apgr(parts["score"], test), data.apgr(data.tokens[test], test)))
        results[kind] = {
            "router": data.apgr(scores, rows),
            "learned_part": data.apgr(learned, rows),
            "length": data.apgr(data.tokens, rows),
            "fold_mean_router": float(np.mean([f[0] for f in per_fold])),
            "fold_mean_length": float(np.mean([f[1] for f in per_fold])),
        }
        print(kind, json.dumps(results[kind]), flush=True)
    results["seconds"] = round(time.perf_counter() - started)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "routing_generalise.json").write_text(json.dumps(results, indent=2, default=str))
    print_tables(results)


def print_tables(results: dict) -> None:
    print(
        "\n| left-out group | n | weak / strong acc. | router | learned part alone | length | random | "
        "router - length (90% bootstrap) | mean weight of learned part |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results["groups"]:
        print(
            f"| {r['group']} | {r['n']} | {r['weak_accuracy']:.3f} / {r['strong_accuracy']:.3f} | {r['router']:.3f} "
            f"| {r['learned_part']:.3f} | {r['length']:.3f} | {r['random']:.3f} | {r['router'] - r['length']:+.3f} "
            f"({r['margin_interval'][0]:+.3f} .. {r['margin_interval'][1]:+.3f}) | {r['mean_weight']:.2f} |"
        )
    p = results["groups_pooled"]
    print(
        f"| pooled | {results['n']} | | {p['router']:.3f} | {p['learned part']:.3f} | {p['length']:.3f} "
        f"| {p['random']:.3f} | {p['router'] - p['length']:+.3f} | |"
    )
    worst = min(results["groups"], key=lambda r: r["router"] - r["length"])
    print(f"\nworst group vs length: {worst['group']} {worst['router']:.3f} vs {worst['length']:.3f}")
    print(
        "\n| left-out group | options stripped: router / learned part / length (weight) | one subject at a time: "
        "router / learned part / length |"
    )
    print("|---|---|---|")
    for r in results["groups"]:
        print(
            f"| {r['group']} | {r['stripped_router']:.3f} / {r['stripped_learned_part']:.3f} / "
            f"{r['stripped_length']:.3f} ({r['stripped_mean_weight']:.2f}) | {r['within_subject_router']:.3f} / "
            f"{r['within_subject_learned_part']:.3f} / {r['within_subject_length']:.3f} |"
        )
    s, w = results["stripped_pooled"], results["within_subject_pooled"]
    print(
        f"| pooled | {s['router']:.3f} / {s['learned part']:.3f} / {s['length']:.3f} | {w['router']:.3f} / "
        f"{w['learned part']:.3f} / {w['length']:.3f} (random {w['random']:.3f}) |"
    )
    for kind in ("stratified", "subjects"):
        r = results[kind]
        print(
            f"{kind}: router {r['router']:.3f}, learned part {r['learned_part']:.3f}, length {r['length']:.3f}; "
            f"fold means {r['fold_mean_router']:.3f} / {r['fold_mean_length']:.3f}"
        )
    for criterion, n in results.get("nested", {}).items():
        per_group = ", ".join(f"{g} {v['apgr']:.3f}" for g, v in n["per_group"].items())
        print(f"nested, chosen by {criterion}: {per_group}; pooled {n['pooled']:.3f}")


if __name__ == "__main__":
    main()
