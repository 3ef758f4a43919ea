"""Fit and validate the assistant's decline rule on recorded SQuAD answers, leaving whole articles out.

Input: the rows ``qa_squad.py`` wrote for one model (``Answer.signals`` per question). A question is "worth
answering" when it is answerable and the answer was right; the rule (logistic regression over the signals, and a
threshold) should decline the others. For each article in turn: fit on the other articles, choose the threshold
that maximises balanced accuracy there with false-decline <= ``--max-false-decline``, and score the left-out
article. Beside it, in the same run, the simple baselines with thresholds chosen the same way:

    word overlap      ``question_coverage`` alone (share of the question's words in the best passage)
    relevance         ``top_relevance`` alone (embedding cosine of the best passage)
    model refusal     the model's own "the documents do not say" (no threshold)

The figure that counts is the worst left-out article. ``--write`` prints the rule fitted on all articles as
Python (for ``agent/catalogue.py``); ``--curve`` prints declined-correctly against false-decline for the pooled
left-out scores.

    .venv/bin/python benchmarks/abstention_fit.py benchmarks/out/qa_squad/squad2_dev/<model>__assistant-n600-s0.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

FEATURES = (
    "top_relevance",
    "question_coverage",
    "missing_names",
    "answer_support",
    "min_prob",
    "mean_logprob",
    "top_rerank",
)


def load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def matrix(rows: Sequence[dict[str, Any]], features: Sequence[str]) -> np.ndarray:
    return np.array([[float(r["signals"].get(f, 0.0)) for f in features] for r in rows], dtype=np.float64)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, steps: int = 50) -> np.ndarray:
    """Weights (bias last) of an L2-regularised logistic regression, by Newton's method on standardised x."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(xb.shape[1])
    penalty = np.eye(xb.shape[1]) * l2
    penalty[-1, -1] = 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -50, 50)))
        gradient = xb.T @ (p - y) + penalty @ w
        hessian = (xb * (p * (1 - p))[:, None]).T @ xb + penalty
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


class Rule:
    """Standardise, weight, sigmoid: the same arithmetic as ``slmkit.agent.decline.DeclineRule``."""

    def __init__(self, rows: Sequence[dict[str, Any]], features: Sequence[str]) -> None:
        x = matrix(rows, features)
        self.features = list(features)
        self.center = x.mean(axis=0)
        self.scale = np.where(x.std(axis=0) > 1e-9, x.std(axis=0), 1.0)
        self.w = fit_logistic((x - self.center) / self.scale, worth(rows))

    def score(self, rows: Sequence[dict[str, Any]]) -> np.ndarray:
        z = ((matrix(rows, self.features) - self.center) / self.scale) @ self.w[:-1] + self.w[-1]
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -50, 50))))


def worth(rows: Sequence[dict[str, Any]]) -> np.ndarray:
    return np.array([1.0 if (not r["impossible"] and r["correct"]) else 0.0 for r in rows])


def outcome(rows: Sequence[dict[str, Any]], declined: np.ndarray) -> dict[str, float]:
    """The benchmark's figures when ``declined`` (on top of the assistant's own declines) is applied."""
    ans = [i for i, r in enumerate(rows) if not r["impossible"]]
    una = [i for i, r in enumerate(rows) if r["impossible"]]
    out = [bool(declined[i]) or rows[i]["declined"] for i in range(len(rows))]
    ac = sum(1 for i in ans if rows[i]["correct"] and not out[i]) / max(1, len(ans))
    dc = sum(1 for i in una if out[i]) / max(1, len(una))
    fd = sum(1 for i in ans if out[i]) / max(1, len(ans))
    return {"answered_correct": ac, "declined_correctly": dc, "false_decline": fd, "balanced": (ac + dc) / 2}


def best_threshold(rows: Sequence[dict[str, Any]], scores: np.ndarray, max_fd: float) -> float:
    """The threshold with the best balanced score among those keeping false-decline <= ``max_fd`` (0: none)."""
    best, best_t = outcome(rows, np.zeros(len(rows), dtype=bool))["balanced"], 0.0
    for t in np.unique(np.concatenate([[0.0], scores])):
        o = outcome(rows, scores < t)
        if o["false_decline"] <= max_fd and o["balanced"] > best:
            best, best_t = o["balanced"], float(t)
    return best_t


Scorer = Callable[[Sequence[dict[str, Any]], Sequence[dict[str, Any]]], np.ndarray]


def fitted(features: Sequence[str]) -> Scorer:
    def scorer(train: Sequence[dict[str, Any]], test: Sequence[dict[str, Any]]) -> np.ndarray:
        return Rule(train, features).score(test)

    return scorer


def single(feature: str) -> Scorer:
    def scorer(train: Sequence[dict[str, Any]], test: Sequence[dict[str, Any]]) -> np.ndarray:
        return matrix(test, [feature])[:, 0]

    return scorer


def leave_one_article_out(
    rows: list[dict[str, Any]], scorer: Scorer, max_fd: float
) -> tuple[dict[str, dict[str, float]], np.ndarray]:
    articles = sorted({r["article"] for r in rows})
    per: dict[str, dict[str, float]] = {}
    pooled = np.zeros(len(rows))
    for article in articles:
        train = [r for r in rows if r["article"] != article]
        test_idx = [i for i, r in enumerate(rows) if r["article"] == article]
        test = [rows[i] for i in test_idx]
        threshold = best_threshold(train, scorer(train, train), max_fd)
        scores = scorer(train, test)
        pooled[test_idx] = scores - threshold  # comparable across folds: below 0 declines
        per[article] = outcome(test, scores < threshold)
    return per, pooled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rows", type=Path, nargs="+", help="qa_squad.py row files of one model (pooled)")
    parser.add_argument("--max-false-decline", type=float, default=0.15)
    parser.add_argument("--features", nargs="+", default=None, help=f"default: those present of {FEATURES}")
    parser.add_argument("--write", action="store_true", help="print the rule fitted on all rows")
    parser.add_argument("--curve", action="store_true", help="declined-correctly vs false-decline, pooled")
    parser.add_argument(
        "--exclude", type=Path, nargs="*", default=[], help="row files whose questions are left out (the test sample)"
    )
    args = parser.parse_args()

    held = {r["id"] for path in args.exclude for r in load(path)}
    rows = [r for path in args.rows for r in load(path) if r.get("signals") and r["id"] not in held]
    features = args.features or [f for f in FEATURES if any(f in r["signals"] for r in rows)]
    systems: dict[str, Scorer] = {
        "fitted rule (" + ", ".join(features) + ")": fitted(features),
        "no rule (the model's own refusals only)": lambda train, test: np.ones(len(test)),
        "word overlap (question_coverage)": single("question_coverage"),
        "relevance (top_relevance)": single("top_relevance"),
    }
    print(f"{len(rows)} answers, {len({r['article'] for r in rows})} articles; features {features}\n")
    print(
        "| decline rule | worst left-out balanced | mean balanced | answered-correct | declined-correctly "
        "| false-decline (worst) |"
    )
    print("|---|---|---|---|---|---|")
    own = outcome(rows, np.zeros(len(rows), dtype=bool))
    pooled_scores = {}
    for name, scorer in systems.items():
        per, pooled = leave_one_article_out(rows, scorer, args.max_false_decline)
        pooled_scores[name] = pooled
        mean = {k: statistics.mean(p[k] for p in per.values()) for k in own}
        worst = min(per.values(), key=lambda p: p["balanced"])
        print(
            f"| {name} | **{worst['balanced']:.3f}** | {mean['balanced']:.3f} | {mean['answered_correct']:.3f} "
            f"| {mean['declined_correctly']:.3f} | {mean['false_decline']:.3f} "
            f"({max(p['false_decline'] for p in per.values()):.3f}) |"
        )
    if args.curve:
        name = next(iter(systems))
        pooled = pooled_scores[name]
        print(f"\nTrade-off, {name}, pooled left-out scores (offset from each fold's threshold):\n")
        print("| offset | declined-correctly | false-decline | answered-correct | balanced |")
        print("|---|---|---|---|---|")
        for offset in (-0.3, -0.2, -0.1, -0.05, 0.0, 0.05, 0.1, 0.2, 0.3):
            o = outcome(rows, pooled < offset)
            print(
                f"| {offset:+.2f} | {o['declined_correctly']:.3f} | {o['false_decline']:.3f} "
                f"| {o['answered_correct']:.3f} | {o['balanced']:.3f} |"
            )
    if args.write:
        rule = Rule(rows, features)
        threshold = best_threshold(rows, rule.score(rows), args.max_false_decline)
        print("\nDeclineRule(")
        print(f"    weights={dict(zip(features, np.round(rule.w[:-1], 4).tolist(), strict=False))},")
        print(f"    bias={round(float(rule.w[-1]), 4)},")
        print(f"    center={dict(zip(features, np.round(rule.center, 4).tolist(), strict=False))},")
        print(f"    scale={dict(zip(features, np.round(rule.scale, 4).tolist(), strict=False))},")
        print(f"    threshold={round(threshold, 4)},")
        print(")")


if __name__ == "__main__":
    main()
