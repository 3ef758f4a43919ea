"""Grounding (hallucination detection) on RAGTruth summary and data2txt, and HaluEval QA.

Each answer gets a response label (hallucinated: RAGTruth marks at least one span; HaluEval: the hallucinated
answer) and each sentence a sentence label (it overlaps a marked span). Per-sentence features of every signal are
computed once with ``GroundingGuard.features`` and cached in ``benchmarks/out/``; then, for each signal alone and
for the combination:

    5-fold cross-validation grouped by source document (no source in both train and test folds): fit the guard's
    answer model (logistic regression on ``aggregate`` of the sentence features: mean, minimum, share below 0.5,
    log sentence count) on the RAGTruth answers of the training folds, score the held-out answers, AUROC per data
    set; F1 of "hallucinated" at the threshold that maximises F1 on the training folds.

HaluEval is never trained on (its answers are one line: out of domain). Beside it the baseline: the share of answer
words absent from the context. ``--fit`` refits on all of RAGTruth and prints both models (sentence and answer) for
``guards/grounding.py``. The SLM signal is slow on 2 CPU cores, so ``--slm N`` computes it
for a seeded sample of N sources per RAGTruth task (all responses of each sampled source) and N HaluEval items, and
reports that sample separately.

    python benchmarks/grounding.py [--slm 20] [--fit]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "hallucination"
OUT = ROOT / "benchmarks" / "out"
SETS = ("ragtruth_summary", "ragtruth_data2txt", "halueval_qa")
TRAIN_SETS = ("ragtruth_summary", "ragtruth_data2txt")
"""Models are fitted on RAGTruth only (multi-sentence answers over documents, the guard's use); HaluEval's one-line
answers are scored out of domain."""


def load(name: str) -> list[dict]:
    """Items: source id, context, question, answer, response label (1 = hallucinated), hallucinated char spans."""
    rows = [json.loads(line) for line in (DATA / f"{name}.jsonl").read_text().splitlines() if line.strip()]
    items = []
    if name == "halueval_qa":
        for i, r in enumerate(rows):
            for answer, label in ((r["right_answer"], 0), (r["hallucinated_answer"], 1)):
                spans = [(0, len(answer))] if label else []
                items.append(
                    {
                        "set": name,
                        "source": f"halu{i}",
                        "context": r["knowledge"],
                        "question": r["question"],
                        "answer": answer,
                        "label": label,
                        "spans": spans,
                    }
                )
        return items
    for r in rows:
        for resp in r["responses"]:
            items.append(
                {
                    "set": name,
                    "source": f"{name}{r['source_id']}",
                    "context": r["source"],
                    "question": None,
                    "answer": resp["response"],
                    "label": int(bool(resp["labels"])),
                    "spans": [(lab["start"], lab["end"]) for lab in resp["labels"]],
                }
            )
    return items


def absent_share(context: object, answer: str) -> float:
    from slmkit.guards.base import context_text
    from slmkit.guards.text import words

    vocabulary = {w.lower() for w in words(context_text(context))}
    answer_words = [w.lower() for w in words(answer)]
    return sum(w not in vocabulary for w in answer_words) / max(1, len(answer_words))


def compute(items: list[dict], signals: tuple[str, ...], scorer=None) -> None:
    """Adds per-sentence features, sentence labels and ms per answer to each item."""
    from slmkit.guards import GroundingGuard
    from slmkit.guards.text import split_sentences

    guard = GroundingGuard(signals=signals, scorer=scorer)
    for n, item in enumerate(items):
        start = time.perf_counter()
        sentences = split_sentences(item["answer"])
        index = guard.index([item["context"]])
        item["features"] = guard.features(sentences, item["answer"], index, item["question"])
        item["ms"] = (time.perf_counter() - start) * 1000
        item["sentence_labels"] = [int(any(s.start < e and b < s.end for b, e in item["spans"])) for s in sentences]
        item["baseline"] = absent_share(item["context"], item["answer"])
        if n % 200 == 0:
            print(f"  {n}/{len(items)} {np.mean([i['ms'] for i in items[: n + 1]]):.0f} ms/answer", file=sys.stderr)


def sentence_rows(items: list[dict], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Sentence rows: features and labels (1 = supported)."""
    rows, labels = [], []
    for item in items:
        for i, lab in enumerate(item["sentence_labels"]):
            rows.append([item["features"][f][i] for f in names])
            labels.append(1 - lab)
    return np.asarray(rows, dtype=np.float64), np.asarray(labels)


def answer_rows(items: list[dict], names: list[str]) -> tuple[np.ndarray, list[str]]:
    """Answer rows: ``aggregate`` of the sentence features in ``names`` (what the guard's answer model sees)."""
    from slmkit.guards.grounding import aggregate

    rows, columns = [], []
    for item in items:
        agg = aggregate({f: np.asarray(item["features"][f], dtype=np.float64) for f in names})
        columns = list(agg)
        rows.append([float(v[0]) for v in agg.values()])
    return np.asarray(rows), columns


def fit(x: np.ndarray, y: np.ndarray, columns: list[str] | None = None):
    """Logistic regression (L2, C=1) on standardised features. With ``columns``, signs are fixed so the model stays
    monotone: more support in a feature never lowers the support score (``.low`` shares: never raises it)."""
    from scipy.optimize import minimize

    mean, sd = x.mean(0), x.std(0) + 1e-9
    z = (x - mean) / sd

    def bound(column: str) -> tuple[float | None, float | None]:
        if column.endswith(".low"):
            return (None, 0.0)
        return (None, None) if column == "sentences.log" else (0.0, None)

    bounds = [bound(c) for c in columns] if columns else [(None, None)] * x.shape[1]

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        logit = z @ w[:-1] + w[-1]
        p = 1 / (1 + np.exp(-logit))
        nll = np.logaddexp(0, logit).sum() - (y * logit).sum()
        grad = np.append(z.T @ (p - y), (p - y).sum())
        return nll + 0.5 * (w[:-1] ** 2).sum(), grad + np.append(w[:-1], 0.0)

    w = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, bounds=[*bounds, (None, None)], method="L-BFGS-B").x
    return mean, sd, _Model(w[:-1], w[-1])


class _Model:
    def __init__(self, coef: np.ndarray, intercept: float) -> None:
        self.coef_, self.intercept_ = coef[None, :], np.array([intercept])

    def predict_proba(self, z: np.ndarray) -> np.ndarray:
        p = 1 / (1 + np.exp(-(z @ self.coef_[0] + self.intercept_[0])))
        return np.c_[1 - p, p]


def predict(x: np.ndarray, mean, sd, model) -> np.ndarray:
    return model.predict_proba((x - mean) / sd)[:, 1]


def best_f1_threshold(hallucination_score: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    candidates = np.unique(np.quantile(hallucination_score, np.linspace(0.02, 0.98, 49)))
    return float(max(candidates, key=lambda t: f1_score(labels, hallucination_score >= t)))


def cross_validate(items: list[dict], names: list[str], folds: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Held-out hallucination risk (1 - answer support) per item, and held-out F1 decisions."""
    from sklearn.model_selection import GroupKFold

    x, columns = answer_rows(items, names)
    groups = np.array([i["source"] for i in items])
    labels = np.array([i["label"] for i in items])
    risk = np.zeros(len(items))
    decision = np.zeros(len(items), dtype=bool)
    trainable = np.array([i["set"] in TRAIN_SETS for i in items])
    for train, test in GroupKFold(folds).split(x, labels, groups):
        train = train[trainable[train]]
        params = fit(x[train], 1 - labels[train], columns)
        threshold = best_f1_threshold(1 - predict(x[train], *params), labels[train])
        risk[test] = 1 - predict(x[test], *params)
        decision[test] = risk[test] >= threshold
    return risk, decision


def cv_baseline(items: list[dict], folds: int = 5) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import GroupKFold

    risk = np.array([i["baseline"] for i in items])
    labels = np.array([i["label"] for i in items])
    decision = np.zeros(len(items), dtype=bool)
    for train, test in GroupKFold(folds).split(risk, labels, [i["source"] for i in items]):
        decision[test] = risk[test] >= best_f1_threshold(risk[train], labels[train])
    return risk, decision


def report(items: list[dict], columns: dict[str, list[str]], title: str) -> list[str]:
    from sklearn.metrics import f1_score, roc_auc_score

    results = {"baseline: absent-word share": cv_baseline(items)}
    for label, names in columns.items():
        results[label] = cross_validate(items, names)
    lines = [
        f"### {title}",
        "",
        "| signal | " + " | ".join(f"{s} AUROC / F1" for s in SETS) + " |",
        "|---|" + "---|" * len(SETS),
    ]
    for label, (risk, decision) in results.items():
        cells = []
        for s in SETS:
            mask = np.array([i["set"] == s for i in items])
            labels = np.array([i["label"] for i in items])[mask]
            if mask.sum() == 0 or len(set(labels)) < 2:
                cells.append("–")
                continue
            cells.append(f"{roc_auc_score(labels, risk[mask]):.3f} / {f1_score(labels, decision[mask]):.3f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    sizes = {s: sum(i["set"] == s for i in items) for s in SETS}
    ms = {s: np.mean([i["ms"] for i in items if i["set"] == s]) for s in SETS if sizes[s]}
    lines += [
        "",
        "answers: " + ", ".join(f"{s} {n}" for s, n in sizes.items()),
        "ms per answer (features of all signals in this table): " + ", ".join(f"{s} {v:.0f}" for s, v in ms.items()),
        "",
    ]
    return lines


def slm_contribution(items: list[dict], sample: list[dict], base: list[str]) -> list[str]:
    """SLM PMI alone (no fitting), the default model trained on RAGTruth sources outside the sample, and the two
    stacked (leave-one-source-out on the sample): steadier than cross-validating everything on a small sample."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import LeaveOneGroupOut

    held = {i["source"] for i in sample}
    train = [i for i in items if i["set"] in TRAIN_SETS and i["source"] not in held]
    x_train, columns = answer_rows(train, base)
    params = fit(x_train, 1 - np.array([i["label"] for i in train]), columns)
    risk = np.clip(1 - predict(answer_rows(sample, base)[0], *params), 1e-6, 1 - 1e-6)
    pmi = np.array([np.mean(i["features"]["mean_pmi"]) for i in sample])
    labels = np.array([i["label"] for i in sample])
    x = np.c_[np.log(risk / (1 - risk)), pmi]
    trainable = np.array([i["set"] in TRAIN_SETS for i in sample])
    stacked = np.zeros(len(sample))
    for tr, te in LeaveOneGroupOut().split(x, labels, [i["source"] for i in sample]):
        tr = tr[trainable[tr]]
        stacked[te] = 1 - predict(x[te], *fit(x[tr], 1 - labels[tr]))
    rows = {
        "mean token PMI (SLM), no fitting": -pmi,
        "default model, trained on RAGTruth sources outside the sample": risk,
        "default model + PMI, stacked, leave-one-source-out": stacked,
        "baseline: absent-word share": np.array([i["baseline"] for i in sample]),
    }
    lines = ["| on the sample | " + " | ".join(f"{s} AUROC" for s in SETS) + " |", "|---|" + "---|" * len(SETS)]
    for label, score in rows.items():
        cells = [
            f"{roc_auc_score(labels[m], score[m]):.3f}"
            for m in (np.array([i["set"] == s for i in sample]) for s in SETS)
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slm", type=int, default=0, help="sources per set for the SLM signal (0: skip)")
    parser.add_argument("--fit", action="store_true", help="refit the weights on all data and print them")
    parser.add_argument("--refresh", action="store_true", help="recompute cached features")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    import torch

    # The benchmark machine has 2 cores shared with other jobs: one intra-op thread is several times faster there.
    torch.set_num_threads(1)

    from slmkit.guards.grounding import FEATURES

    base_signals = ("lexical", "structured", "embedding")
    cache = OUT / "grounding_features.pkl"
    if cache.exists() and not args.refresh:
        items = pickle.loads(cache.read_bytes())
    else:
        items = [item for s in SETS for item in load(s)]
        compute(items, base_signals)
        cache.write_bytes(pickle.dumps(items))
    columns = {s: list(FEATURES[s]) for s in base_signals}
    columns["combined (default: lexical + structured + embedding)"] = [f for s in base_signals for f in FEATURES[s]]
    lines = report(items, columns, f"All answers ({len(items)}), default signals")

    if args.slm:
        slm_cache = OUT / f"grounding_features_slm{args.slm}.pkl"
        if slm_cache.exists() and not args.refresh:
            sample = pickle.loads(slm_cache.read_bytes())
        else:
            from slmkit.agent.grounding_scorer import local_grounding_scorer

            rng = random.Random(0)
            sample = []
            for s in SETS:
                sources = sorted({i["source"] for i in items if i["set"] == s})
                chosen = set(rng.sample(sources, min(args.slm, len(sources))))
                sample += [dict(i) for i in items if i["source"] in chosen]
            compute(sample, (*base_signals, "slm"), scorer=local_grounding_scorer(n_threads=1))
            slm_cache.write_bytes(pickle.dumps(sample))
        all_signals = (*base_signals, "slm")
        slm_columns = {**columns, "slm": list(FEATURES["slm"])}
        slm_columns["combined + slm"] = [f for s in all_signals for f in FEATURES[s]]
        lines += report(sample, slm_columns, f"Seeded sample with the SLM signal ({len(sample)} answers)")
        lines += slm_contribution(items, sample, [f for s in base_signals for f in FEATURES[s]])

    text = "\n".join(lines)
    (OUT / "grounding.md").write_text(text)
    print(text)
    if args.fit:
        names = [f for s in base_signals for f in FEATURES[s]]
        items = [i for i in items if i["set"] in TRAIN_SETS]
        x, y = sentence_rows(items, names)
        print(model_code("SENTENCE_MODEL", names, *fit(x, y, names)))
        x, columns = answer_rows(items, names)
        print(model_code("ANSWER_MODEL", columns, *fit(x, 1 - np.array([i["label"] for i in items]), columns)))
        if args.slm:  # the opt-in SLM models: fitted on the sample, signs left free (few rows)
            names = [f for s in (*base_signals, "slm") for f in FEATURES[s]]
            rows = [i for i in sample if i["set"] in TRAIN_SETS]
            x, y = sentence_rows(rows, names)
            print(model_code("SENTENCE_MODEL_SLM", names, *fit(x, y)))
            x, columns = answer_rows(rows, names)
            print(model_code("ANSWER_MODEL_SLM", columns, *fit(x, 1 - np.array([i["label"] for i in rows]))))


def model_code(name: str, columns: list[str], mean, sd, model) -> str:
    lines = [f"{name} = LogisticModel(", "    {"]
    for column, m, d, w in zip(columns, mean, sd, model.coef_[0], strict=True):
        if d < 1e-6:  # constant on the training rows: carries nothing
            continue
        lines.append(f'        "{column}": ({m:.4f}, {d:.4f}, {w:.4f}),')
    lines += ["    },", f"    {model.intercept_[0]:.4f},", ")"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
