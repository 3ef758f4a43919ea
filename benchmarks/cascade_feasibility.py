"""Could a cascade SmolLM2-135M -> Qwen2.5-Coder-1.5B pay on document Q&A? Measured on recorded answers first.

Before wiring an escalation signal into the assistant, this asks whether any signal the 135M model's answers carry
(``Answer.signals``: retrieval relevance, question coverage, missing names, answer support, token probabilities,
refusal, the decline rule's inputs) can tell which questions to send to the 1.5B model. Rows: answers that
``qa_squad.py`` recorded for both models on the same questions (``--small``/``--large``), and, to fit the logistic
escalation score, the 135M model's answers to other questions of the same articles (``--train``; the evaluation
questions are left out of it). A question is "right" when an answerable one is answered correctly or an
unanswerable one declined; the cascade's result on a question is the large model's when it is escalated. Printed:
the score's AUROC for "the small model is right", then the share of the gap between the two models recovered when
the lowest-scored share E of questions is escalated, for both "right" and answered-correct, beside an oracle that
escalates exactly the questions the large model gets right and the small one does not.

    .venv/bin/python benchmarks/cascade_feasibility.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from abstention_fit import fit_logistic, load

ROWS = Path(__file__).resolve().parent / "out" / "qa_squad" / "squad2_dev"
FEATURES = ("top_relevance", "question_coverage", "missing_names", "answer_support", "min_prob", "mean_logprob")


def right(r: dict[str, Any]) -> float:
    return float(r["declined"] if r["impossible"] else (r["correct"] and not r["declined"]))


def correct(r: dict[str, Any]) -> float:
    return float((not r["impossible"]) and r["correct"] and not r["declined"])


def features(rows: list[dict[str, Any]]) -> np.ndarray:
    return np.array(
        [[float(r["signals"].get(f, 0.0)) for f in FEATURES] + [float(r["declined"])] for r in rows], dtype=float
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=Path, default=ROWS / "smollm2-135m-instruct__assistant-n40-s0.jsonl")
    parser.add_argument("--large", type=Path, default=ROWS / "qwen2.5-coder-1.5b-instruct__assistant-n40-s0.jsonl")
    parser.add_argument("--train", type=Path, default=ROWS / "smollm2-135m-instruct__assistant,no-guards-n300-s0.jsonl")
    args = parser.parse_args()
    from sklearn.metrics import roc_auc_score

    small = {r["id"]: r for r in load(args.small)}
    large = {r["id"]: r for r in load(args.large)}
    ids = [i for i in small if i in large]
    train = [r for r in load(args.train) if r["id"] not in small]
    x = features(train)
    center, scale = x.mean(axis=0), np.where(x.std(axis=0) > 1e-9, x.std(axis=0), 1.0)
    w = fit_logistic((x - center) / scale, np.array([right(r) for r in train]))
    xe = (features([small[i] for i in ids]) - center) / scale
    score = xe @ w[:-1] + w[-1]
    print(f"{len(ids)} questions answered by both models; escalation score fitted on {len(train)} other answers")
    print(
        f"AUROC of the score for 'the small model is right': {roc_auc_score([right(small[i]) for i in ids], score):.3f}"
    )
    print(
        "\n| metric | small | large | E escalated | cascade | gap recovered | oracle at E |\n"
        "|---|---|---|---|---|---|---|"
    )
    for name, value in (("right (balanced)", right), ("answered-correct", correct)):
        s = np.array([value(small[i]) for i in ids])
        big = np.array([value(large[i]) for i in ids])
        mask = (
            np.array([True] * len(ids))
            if name.startswith("right")
            else np.array([not small[i]["impossible"] for i in ids])
        )
        gap = big[mask].mean() - s[mask].mean()
        gain = (big - s) > 0
        for share in (0.1, 0.2, 0.3, 0.5):
            n = round(share * len(ids))
            escalated = np.zeros(len(ids), dtype=bool)
            escalated[np.argsort(score)[:n]] = True
            cascade = np.where(escalated, big, s)[mask].mean()
            oracle = np.zeros(len(ids), dtype=bool)
            oracle[np.flatnonzero(gain)[:n]] = True
            best = np.where(oracle, big, s)[mask].mean()
            print(
                f"| {name} | {s[mask].mean():.3f} | {big[mask].mean():.3f} | {share:.1f} | {cascade:.3f} | "
                f"{(cascade - s[mask].mean()) / gap:.2f} | {(best - s[mask].mean()) / gap:.2f} |"
            )


if __name__ == "__main__":
    main()
