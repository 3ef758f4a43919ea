"""Grounding guard, validated leave-one-dataset-out (issue 15).

Four development sets (``grounding_data.py``): RAGTruth summary, RAGTruth data2txt, HaluEval QA and QA made from
SQuAD 2.0. For each set in turn, every fitted part of the guard (the answer model over its features, and the
calibration of its score) is fitted on the other three and scored on the one left out. The figure that counts is the
worst left-out AUROC; beside it, in the same run and on the same answers, the simple baselines:

    absent words           share of answer words (all words, lower-cased) missing from the context
    embedding similarity   cosine of the answer to its best context passage (item), packaged all-MiniLM-L6-v2

Stages (features are cached in ``benchmarks/out/grounding_loo_*.pkl``):

    python benchmarks/grounding_loo.py --features        # per-sentence features of every signal, all sets
    python benchmarks/grounding_loo.py                   # leave-one-dataset-out table, calibration, latency
    python benchmarks/grounding_loo.py --fit             # + fit on all four sets, print the weights for the guard
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import itertools

from grounding_data import SETS, load

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"


def absent_share(context: object, answer: str) -> float:
    """The issue's word-overlap baseline: share of answer words (lower-cased) that the context lacks."""
    from slmkit.guards.base import context_text
    from slmkit.guards.text import words

    items = context if isinstance(context, list) else [context]
    vocabulary = {w.lower() for item in items for w in words(context_text(item))}
    answer_words = [w.lower() for w in words(answer)]
    return sum(w not in vocabulary for w in answer_words) / max(1, len(answer_words))


def passages(index) -> list[str]:
    """The context items as given (the retrieved passages; MiniLM reads the first 256 word pieces of each)."""
    return [p for p in index.items if p.strip()] or [""]


def compute(items: list[dict], cross_encoder: bool = True) -> None:
    """Per-sentence features of every signal, sentence labels, baselines and ms per part, added to each item."""
    from slmkit.core.embeddings import SentenceTransformerEmbeddings, embed_texts
    from slmkit.guards import GroundingGuard
    from slmkit.guards.grounding_signals import (
        CrossEncoder,
        best_windows,
        lexical_features,
        span_features,
        structured_features,
    )
    from slmkit.guards.text import split_sentences

    guard = GroundingGuard()
    embedder = SentenceTransformerEmbeddings()
    encoder = CrossEncoder()
    for n, item in enumerate(items):
        sentences = split_sentences(item["answer"])
        ms: dict[str, float] = {}
        t = time.perf_counter()
        index = guard.index(item["context"] if isinstance(item["context"], list) else [item["context"]])
        feats: dict[str, np.ndarray] = {}
        lex = lexical_features(sentences, index)
        for j, name in enumerate(("coverage", "local_coverage", "number_support", "name_support")):
            feats[name] = lex[:, j]
        feats["attribute_consistency"] = structured_features(sentences, index)[:, 0]
        span = span_features(sentences, index, item["question"])
        for j, name in enumerate(
            (
                "content_words",
                "unsupported_words",
                "unsupported_run",
                "local_unsupported",
                "unsupported_numbers",
                "unsupported_names",
            )
        ):
            feats[name] = span[:, j]
        ms["lexical"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        windows = passages(index)
        vectors = embed_texts(embedder, [item["answer"], *windows])
        item["embedding_baseline"] = float((vectors[1:] @ vectors[0]).max())
        ms["embedding"] = (time.perf_counter() - t) * 1000
        if cross_encoder:
            t = time.perf_counter()
            feats["ce_sentence"] = encoder.logits([(s.text, best_windows(s, index)[0]) for s in sentences])
            ms["cross_encoder"] = (time.perf_counter() - t) * 1000
            feats["ce_window"] = encoder.logits([(s.text, best_windows(s, index, 1, 3)[0]) for s in sentences])
        item["features"] = feats
        item["ms"] = ms
        item["n_sentences"] = len(sentences)
        item["sentence_labels"] = [int(any(s.start < e and b < s.end for b, e in item["spans"])) for s in sentences]
        item["baseline"] = absent_share(item["context"], item["answer"])
        if n % 25 == 0:
            print(f"  {item['set']} {n}/{len(items)} {ms}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", action="store_true", help="compute and cache the features")
    parser.add_argument("--sets", nargs="*", default=list(SETS))
    parser.add_argument("--limit", type=int, default=0, help="answers per set (0: all), seeded")
    parser.add_argument("--fit", action="store_true", help="fit on all sets and print the guard's models")
    parser.add_argument("--latency", type=int, default=40, help="answers to time (0: skip)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(1)
    if args.features:
        for name in args.sets:
            items = [i for i in load(name) if i["answer"].strip()]
            if args.limit:
                rng = np.random.default_rng(0)
                items = [items[k] for k in sorted(rng.choice(len(items), min(args.limit, len(items)), replace=False))]
            compute(items)
            (OUT / f"grounding_loo_{name}.pkl").write_bytes(pickle.dumps(items))
        return
    evaluate(args.fit, args.latency)


# -- answer-level features and the leave-one-dataset-out fit ------------------------------------------------------
RENAME = {"ce_sentence": "relevance"}
SENTENCE_SIGNS = {
    "content_words": 0, "unsupported_words": -1, "unsupported_run": -1, "local_unsupported": -1,
    "unsupported_numbers": -1, "unsupported_names": -1, "attribute_consistency": 1, "relevance": 1,
    "coverage": 1, "local_coverage": 1, "number_support": 1, "name_support": 1, "max_similarity": 1,
}  # fmt: skip
"""Direction each feature may move the support score: +1 up, -1 down, 0 free (answer features: by their stem)."""


def answer_sign(name: str) -> int:
    if name in ("unsupported_log", "unsupported_share", "run_max", "local_share", "numbers", "names"):
        return -1
    return SENTENCE_SIGNS.get(name.split(".")[0], 0)


def prepare(item: dict) -> None:
    """Keep the features of the sentences the guard judges (as it does), renamed as the guard names them, and the
    answer features the guard computes from them."""
    from slmkit.guards.grounding import answer_features
    from slmkit.guards.grounding_signals import SPAN_FEATURES, ContextIndex, judgeable, span_features
    from slmkit.guards.text import split_sentences

    sentences = split_sentences(item["answer"])
    # the lexical span features cost microseconds: recomputed with the current code on every run
    index = ContextIndex.build(item["context"] if isinstance(item["context"], list) else [item["context"]])
    values = span_features(sentences, index, item["question"])
    for j, name in enumerate(SPAN_FEATURES):
        item["features"][name] = values[:, j]
    keep = np.array([judgeable(s.text) == "" for s in sentences], dtype=bool)
    item["judged"] = keep
    item["sf"] = {RENAME.get(k, k): np.asarray(v, dtype=np.float64)[keep] for k, v in item["features"].items()}
    item["slabels"] = np.asarray(item["sentence_labels"])[keep]
    item["agg"] = {k: float(v[0]) for k, v in answer_features(item["sf"]).items()} if keep.any() else None


def fit_logistic(x: np.ndarray, y: np.ndarray, signs: list[int], weights: np.ndarray | None = None, l2: float = 1.0):
    """Logistic regression on standardised features, L2, each weight's sign bounded by ``signs``; rows weighted."""
    from scipy.optimize import minimize

    mean, sd = x.mean(0), x.std(0) + 1e-9
    z = (x - mean) / sd
    w_rows = np.ones(len(y)) if weights is None else weights * len(y) / weights.sum()
    bounds = [(0.0, None) if s > 0 else (None, 0.0) if s < 0 else (None, None) for s in signs] + [(None, None)]

    def loss(w: np.ndarray):
        logit = z @ w[:-1] + w[-1]
        p = 1 / (1 + np.exp(-logit))
        nll = (w_rows * (np.logaddexp(0, logit) - y * logit)).sum()
        g = w_rows * (p - y)
        return nll + 0.5 * l2 * (w[:-1] ** 2).sum(), np.append(z.T @ g + l2 * w[:-1], g.sum())

    w = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, bounds=bounds, method="L-BFGS-B").x
    return mean, sd, w


def predict_logit(x: np.ndarray, params) -> np.ndarray:
    mean, sd, w = params
    return ((x - mean) / sd) @ w[:-1] + w[-1]


def matrix(items: list[dict], names: list[str]) -> np.ndarray:
    return np.array([[item["agg"][n] for n in names] for item in items])


def set_weights(items: list[dict]) -> np.ndarray:
    """Each training set weighs the same, whatever its size."""
    counts: dict[str, int] = {}
    for i in items:
        counts[i["set"]] = counts.get(i["set"], 0) + 1
    return np.array([1.0 / counts[i["set"]] for i in items])


def fit_answer(items: list[dict], names: list[str]):
    x = matrix(items, names)
    y = np.array([1 - i["label"] for i in items], dtype=float)
    return fit_logistic(x, y, [answer_sign(n) for n in names], set_weights(items))


def fit_sentence(items: list[dict], names: list[str]):
    rows, labels, weights = [], [], []
    w = dict(zip([i["set"] for i in items], set_weights(items), strict=False))
    for item in items:
        n = len(item["slabels"])
        for j in range(n):
            rows.append([item["sf"][f][j] for f in names])
            labels.append(1 - item["slabels"][j])
            weights.append(w[item["set"]] / n)
    return fit_logistic(np.array(rows), np.array(labels, float), [SENTENCE_SIGNS[f] for f in names], np.array(weights))


def loo(items: list[dict], names: list[str]) -> np.ndarray:
    """Held-out support probability of every answer, each set's from a model fitted on the other sets."""
    x = matrix(items, names)
    sets = np.array([i["set"] for i in items])
    out = np.zeros(len(items))
    for s in sorted(set(sets)):
        train, test = sets != s, sets == s
        params = fit_answer([items[k] for k in np.where(train)[0]], names)
        out[test] = 1 / (1 + np.exp(-predict_logit(x[test], params)))
    return out


def auroc_by_set(items: list[dict], support: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    sets = np.array([i["set"] for i in items])
    labels = np.array([i["label"] for i in items])
    return {s: float(roc_auc_score(labels[sets == s], -support[sets == s])) for s in SETS if (sets == s).any()}


def load_cached(sets=SETS) -> list[dict]:
    items = []
    for name in sets:
        path = OUT / f"grounding_loo_{name}.pkl"
        if path.exists():
            items += pickle.loads(path.read_bytes())
    for item in items:
        prepare(item)
    return [i for i in items if i["agg"] is not None]


LEXICAL_ANSWER = ["unsupported_share", "unsupported_log", "run_max", "local_share", "numbers", "names",
                  "attribute_consistency.min"]  # fmt: skip
CE_ANSWER = ["relevance.min", "relevance.mean"]
SENTENCE_NAMES = ["content_words", "unsupported_words", "unsupported_run", "local_unsupported", "unsupported_numbers",
                  "unsupported_names", "attribute_consistency", "relevance"]  # fmt: skip
LEXICAL_SENTENCE = SENTENCE_NAMES[:-1]
VARIANTS = {
    "guard (default: spans + structured)": LEXICAL_ANSWER,
    "guard + cross-encoder (signals=(..., 'cross_encoder'))": LEXICAL_ANSWER + CE_ANSWER,
    "cross-encoder alone (fitted)": CE_ANSWER,
}


def guard_support(items: list[dict], names: list[str]) -> np.ndarray:
    """Leave-one-dataset-out support; answers the guard cannot judge get its "no evidence" score, as it gives."""
    from slmkit.guards.grounding import UNJUDGED_SCORE

    judged = [i for i in items if i["agg"] is not None]
    held = dict(zip([id(i) for i in judged], loo(judged, names), strict=True))
    return np.array([held.get(id(i), UNJUDGED_SCORE) for i in items])


def table(items: list[dict]) -> tuple[list[str], dict[str, np.ndarray]]:
    rows = {
        "baseline: absent-word share": -np.array([i["baseline"] for i in items]),
        "baseline: best-passage embedding similarity": np.array([i["embedding_baseline"] for i in items]),
    }
    for label, names in VARIANTS.items():
        rows[label] = guard_support(items, names)
    present = [s for s in SETS if any(i["set"] == s for i in items)]
    lines = [
        "| score | " + " | ".join(f"{s} left out" for s in present) + " | worst |",
        "|---|" + "---|" * (len(present) + 1),
    ]
    for label, support in rows.items():
        a = auroc_by_set(items, support)
        lines.append(f"| {label} | " + " | ".join(f"{a[s]:.3f}" for s in present) + f" | **{min(a.values()):.3f}** |")
    sizes = ", ".join(
        f"{s} {sum(i['set'] == s for i in items)} ({np.mean([i['label'] for i in items if i['set'] == s]):.0%} "
        "hallucinated)"
        for s in present
    )
    return [*lines, "", f"answers: {sizes}", ""], rows


def calibration(items: list[dict], support: np.ndarray) -> list[str]:
    """Reliability of the held-out scores: per score bin, the share of answers that were in fact supported."""
    y = np.array([1 - i["label"] for i in items])
    edges = np.linspace(0, 1, 11)
    lines = ["| score bin | answers | mean score | share supported |", "|---|---|---|---|"]
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        m = (support >= lo) & ((support < hi) if hi < 1 else (support <= hi))
        if m.sum():
            ece += m.sum() / len(y) * abs(support[m].mean() - y[m].mean())
            lines.append(f"| {lo:.1f}-{hi:.1f} | {m.sum()} | {support[m].mean():.2f} | {y[m].mean():.2f} |")
    per_set = []
    for s in SETS:
        m = np.array([i["set"] == s for i in items])
        if m.any():
            per_set.append(f"{s} mean score {support[m].mean():.2f} vs supported {y[m].mean():.2f}")
    return [*lines, "", f"expected calibration error {ece:.3f}; " + "; ".join(per_set), ""]


def latency(items: list[dict], n: int = 40) -> list[str]:
    """p50 ms per answer: the default guard's ``check`` (models loaded first) vs the word-overlap baseline."""
    from slmkit.guards import GroundingGuard

    rng = np.random.default_rng(1)
    sample = [items[k] for k in rng.choice(len(items), min(n, len(items)), replace=False)]
    guard = GroundingGuard(signals=("spans", "structured", "cross_encoder"))
    guard.check(answer="Warm-up sentence about Paris.", context=["Paris is in France."], question="Where?")
    times, base = [], []
    for item in sample:
        t = time.perf_counter()
        guard.check(answer=item["answer"], context=item["context"], question=item["question"])
        times.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        absent_share(item["context"], item["answer"])
        base.append((time.perf_counter() - t) * 1000)
    lexical = GroundingGuard(signals=("spans", "structured"))
    lex = []
    for item in sample:
        t = time.perf_counter()
        lexical.check(answer=item["answer"], context=item["context"], question=item["question"])
        lex.append((time.perf_counter() - t) * 1000)
    return [
        f"p50 ms per answer over {len(sample)} answers (p90 in brackets): with the cross-encoder "
        f"{np.median(times):.0f} ({np.percentile(times, 90):.0f}), default (spans + structured) {np.median(lex):.1f} "
        f"({np.percentile(lex, 90):.1f}), word-overlap baseline {np.median(base):.2f} ({np.percentile(base, 90):.2f})",
        "",
    ]


def model_code(name: str, columns: list[str], params) -> str:
    mean, sd, w = params
    lines = [f"{name} = LogisticModel(", "    {"]
    for column, m, d, weight in zip(columns, mean, sd, w[:-1], strict=True):
        lines.append(f'        "{column}": ({m:.4f}, {d:.4f}, {weight:.4f}),')
    lines += ["    },", f"    {w[-1]:.4f},", ")"]
    return "\n".join(lines)


def lexical_items() -> list[dict]:
    """Every answer of the four sets with the model-free features (spans, structured), computed now (seconds)."""
    from slmkit.guards.grounding_signals import ContextIndex, structured_features
    from slmkit.guards.text import split_sentences

    items = [i for name in SETS for i in load(name) if i["answer"].strip()]
    for item in items:
        sentences = split_sentences(item["answer"])
        index = ContextIndex.build(item["context"] if isinstance(item["context"], list) else [item["context"]])
        item["features"] = {"attribute_consistency": structured_features(sentences, index)[:, 0]}
        item["sentence_labels"] = [int(any(s.start < e and b < s.end for b, e in item["spans"])) for s in sentences]
        item["baseline"] = absent_share(item["context"], item["answer"])
        prepare(item)
    return items


def full_table(items: list[dict]) -> tuple[list[str], np.ndarray]:
    support = guard_support(items, LEXICAL_ANSWER)
    rows = {"baseline: absent-word share": -np.array([i["baseline"] for i in items]), "guard (default)": support}
    lines = [
        "| score | " + " | ".join(f"{s} left out" for s in SETS) + " | worst |",
        "|---|" + "---|" * (len(SETS) + 1),
    ]
    for label, values in rows.items():
        a = auroc_by_set(items, values)
        lines.append(f"| {label} | " + " | ".join(f"{a[s]:.3f}" for s in SETS) + f" | **{min(a.values()):.3f}** |")
    sizes = ", ".join(
        f"{s} {sum(i['set'] == s for i in items)} ({np.mean([i['label'] for i in items if i['set'] == s]):.0%} "
        "hallucinated)"
        for s in SETS
    )
    return [*lines, "", f"answers: {sizes}", ""], support


def evaluate(fit: bool, n_latency: int) -> None:
    full = lexical_items()
    lines = ["### All answers: default guard (spans + structured) vs word overlap, leave-one-dataset-out", ""]
    table_lines, support = full_table(full)
    lines += table_lines
    lines += [
        "Reliability of the default guard's held-out scores (each set scored by models fitted on the others):",
        "",
    ]
    lines += calibration(full, support)
    items = load_cached()
    if items:
        lines += ["### Seeded sample with the model signals (cross-encoder, embedding baseline)", ""]
        lines += table(items)[0]
        lines += ["Reliability of the cross-encoder mode's held-out scores on the sample:", ""]
        lines += calibration(items, guard_support(items, LEXICAL_ANSWER + CE_ANSWER))
    if n_latency:
        lines += latency(items or full, n_latency)
    text = "\n".join(lines)
    (OUT / "grounding_loo.md").write_text(text)
    print(text)
    if fit:
        judged = [i for i in full if i["agg"] is not None]
        print(model_code("SENTENCE_MODEL", LEXICAL_SENTENCE, fit_sentence(judged, LEXICAL_SENTENCE)))
        print(model_code("ANSWER_MODEL", LEXICAL_ANSWER, fit_answer(judged, LEXICAL_ANSWER)))
        judged = [i for i in items if i["agg"] is not None]
        if judged:
            print(model_code("SENTENCE_MODEL_CE", SENTENCE_NAMES, fit_sentence(judged, SENTENCE_NAMES)))
            names = LEXICAL_ANSWER + CE_ANSWER
            print(model_code("ANSWER_MODEL_CE", names, fit_answer(judged, names)))


if __name__ == "__main__":
    main()
