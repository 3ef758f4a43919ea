"""Routing document questions before any answer: can retrieval and question features tell which SQuAD questions
need the 1.5B model? Measured on the answers ``cascade_squad.py`` recorded (the 135M and 1.5B models on the same
questions), each recorded sample left out in turn.

    label     1 when the 1.5B model is right (answers correctly, or declines an unanswerable question) and the 135M
              model is not: the strong route was needed
    features  known before generation: best-passage relevance (``top_relevance``), question coverage, names of the
              question missing from the passages, question length, its wh-word
    router    logistic regression on the other samples, scored on the left-out one
    baselines in the same run: question length (the prompt-length rule: the passages are of fixed size), relevance

Per left-out sample: AUROC for the label, and the share of the gap between the models recovered when the top 30% are
sent to the 1.5B model (the same figure as the cascade's). Needs rows of at least two samples:

    .venv/bin/python benchmarks/cascade_squad.py --n 40 --seed S      (for S in 0 2 3)
    .venv/bin/python benchmarks/route_squad.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import squad_data
from cascade_squad import recovered, right

WH = ("what", "who", "when", "where", "how", "which", "why")
ROUTED = 0.3


def features(row: dict[str, Any]) -> list[float]:
    words = row["question"].lower().split()
    signals = row["signals"]
    first = words[0] if words else ""
    return [
        float(signals.get("top_relevance", 0.0)),
        float(signals.get("question_coverage", 0.0)),
        float(signals.get("missing_names", 0.0)),
        float(len(words)),
        *(float(first == w) for w in WH),
    ]


def gap_at(small: list[dict[str, Any]], large: list[dict[str, Any]], score: np.ndarray) -> float:
    n = len(small)
    routed = set(np.argsort(-score, kind="stable")[: round(ROUTED * n)].tolist())
    cascade = sum(right(large[i]) if i in routed else right(small[i]) for i in range(n)) / n
    return recovered(sum(map(right, small)) / n, sum(map(right, large)) / n, cascade)


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=Path, default=squad_data.WORK / "cascade_squad" / "squad2_dev")
    args = parser.parse_args()
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    samples = {}
    for path in sorted(args.rows.glob("small-*.jsonl")):
        large = path.with_name(path.name.replace("small-", "large-", 1))
        if large.exists():
            samples[path.stem.removeprefix("small-")] = (_rows(path), _rows(large))
    if len(samples) < 2:
        raise SystemExit(f"need rows of two samples or more in {args.rows} (run cascade_squad.py with two seeds)")

    print(
        "| left-out sample | questions (strong needed) | AUROC: router / length / relevance "
        f"| gap recovered at {ROUTED:.0%} routed: router / length / relevance |"
    )
    print("|---|---|---|---|")
    for tag, (small, large) in samples.items():
        train = [(s, b) for other, (sm, lg) in samples.items() if other != tag for s, b in zip(sm, lg, strict=True)]
        x_train = np.array([features(s) for s, _ in train])
        y_train = np.array([right(b) > right(s) for s, b in train], dtype=float)
        x = np.array([features(s) for s in small])
        y = np.array([right(b) > right(s) for s, b in zip(small, large, strict=True)], dtype=float)
        mean, scale = x_train.mean(axis=0), x_train.std(axis=0) + 1e-9
        model = LogisticRegression(C=0.5).fit((x_train - mean) / scale, y_train)
        scores = {
            "router": model.predict_proba((x - mean) / scale)[:, 1],
            "length": x[:, 3],
            "relevance": x[:, 0],
        }
        auroc = " / ".join(f"{roc_auc_score(y, s):.3f}" for s in scores.values())
        gaps = " / ".join(f"{gap_at(small, large, s):.2f}" for s in scores.values())
        print(f"| {tag} | {len(y)} ({int(y.sum())}) | {auroc} | {gaps} |")


if __name__ == "__main__":
    main()
