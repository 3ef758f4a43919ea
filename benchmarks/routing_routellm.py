"""Learned router vs baselines on RouteLLM's MMLU set: APGR, CPT(50%), CPT(80%), as RouteLLM computes them.

Data: ../shared/data/routing/mmlu/*.csv, per-question correctness of a weak (Mixtral-8x7B) and a strong
(GPT-4-1106) model on 57 MMLU subjects; prompts in mmlu_contaminated_prompts.jsonl are excluded, as RouteLLM does.
Label for training: 1 = weak wrong and strong right (the only case where the strong call pays off).

Routers: random (seed 0), prompt length (tiktoken tokens: longer -> strong), the learned router
(``slmkit.routing.LearnedRouter`` with its defaults: embeddings + structure features) under three embedders side by
side (the full MiniLM; the static table distilled from it, ``zipf`` weighting = the router's default; the same table
with ``sif`` weighting = the Semantic rule's default), and the oracle.
The learned router is cross-validated in 5 folds, two ways:

- ``stratified``: folds stratified by subject (every subject is in every fold, 80% train / 20% test), as for a
  router trained on past traffic of the same domains;
- ``grouped``: folds grouped by subject (test subjects never seen in training), a harder transfer test.

APGR/CPT are computed on the pooled out-of-fold scores (RouteLLM's 10 quantile bins) and, as a check against
fold-to-fold shifts in score scale, averaged over the folds. MiniLM embeddings of the 14k prompts are cached in
benchmarks/out/ (keyed by prompt text), so reruns take seconds; the static ones are recomputed (~5 s).

Semantic signal, per embedder: nearest-example accuracy of the 57 subjects with 5 or 20 example prompts per subject
(seed 0; the rest are queries), i.e. how well "similarity to example utterances" picks the right category.

    python benchmarks/routing_routellm.py [--data ../shared/data/routing] [--folds 5]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import time
from pathlib import Path

import numpy as np
from langchain_core.embeddings import Embeddings

from slmkit.core.tokens import estimate_tokens
from slmkit.routing import LearnedRouter
from slmkit.routing.embedding import embed_texts, minilm_embeddings
from slmkit.routing.evaluation import evaluate_router, oracle_scores
from slmkit.routing.static_embedding import StaticEmbeddings

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
WEAK, STRONG = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"


def load(data: Path) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    contaminated = {json.loads(line)["eval_prompt"] for line in (data / "mmlu_contaminated_prompts.jsonl").open()}
    subjects, prompts, weak, strong = [], [], [], []
    for path in sorted((data / "mmlu").glob("mmlu_*.csv")):
        for row in csv.DictReader(path.open()):
            if row["prompt"] in contaminated:
                continue
            subjects.append(path.stem.removeprefix("mmlu_"))
            prompts.append(row["prompt"])
            weak.append(row[WEAK] == "True")
            strong.append(row[STRONG] == "True")
    return subjects, prompts, np.asarray(weak), np.asarray(strong)


class CachedEmbeddings(Embeddings):
    """An embedder behind a text -> vector table (filled once, saved in benchmarks/out)."""

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.table[t] for t in texts])

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encode(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.table[text].tolist()


def embeddings_for(prompts: list[str]) -> CachedEmbeddings:
    key = hashlib.sha256("\x1e".join(prompts).encode()).hexdigest()[:16]
    path = OUT / f"routellm_mmlu_minilm_{key}.npy"
    if path.is_file():
        vectors = np.load(path)
    else:
        started = time.perf_counter()
        vectors = embed_texts(minilm_embeddings(), prompts)
        print(f"embedded {len(prompts)} prompts in {time.perf_counter() - started:.0f} s")
        OUT.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors)
    return CachedEmbeddings(dict(zip(prompts, vectors, strict=True)))


def static_for(prompts: list[str], weighting: str) -> tuple[CachedEmbeddings, float]:
    """The static table's vectors of every prompt, and the time per prompt (ms, one prompt per call)."""
    embedder = StaticEmbeddings(weighting=weighting)  # type: ignore[arg-type]
    embedder.warm_up()
    started = time.perf_counter()
    vectors = np.concatenate([embedder.encode([p]) for p in prompts])
    per_prompt = (time.perf_counter() - started) * 1000 / len(prompts)
    return CachedEmbeddings(dict(zip(prompts, vectors, strict=True))), per_prompt


def semantic_accuracy(vectors: np.ndarray, subjects: list[str], per_subject: int) -> float:
    """Share of prompts whose most similar example prompt is from their own subject."""
    ids = np.unique(subjects, return_inverse=True)[1]
    rng = np.random.default_rng(0)
    examples = np.concatenate(
        [rng.choice(np.flatnonzero(ids == s), per_subject, replace=False) for s in range(ids.max() + 1)]
    )
    queries = np.setdiff1d(np.arange(len(ids)), examples)
    best = np.argmax(vectors[queries] @ vectors[examples].T, axis=1)
    return float((ids[examples][best] == ids[queries]).mean())


def folds(kind: str, subjects: list[str], n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import GroupKFold, StratifiedKFold

    ids = np.unique(subjects, return_inverse=True)[1]
    if kind == "stratified":
        return list(StratifiedKFold(n, shuffle=True, random_state=0).split(ids, ids))
    return list(GroupKFold(n).split(ids, ids, groups=ids))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "routing")
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()

    subjects, prompts, weak, strong = load(args.data)
    labels = (~weak & strong).astype(int)
    print(
        f"{len(prompts)} prompts, weak acc {weak.mean():.3f}, strong acc {strong.mean():.3f}, label-1 share "
        f"{labels.mean():.3f}"
    )
    embedders = {"MiniLM": embeddings_for(prompts)}
    ms_per_prompt = {}
    for weighting in ("zipf", "sif"):
        embedders[f"static {weighting}"], ms_per_prompt[f"static {weighting}"] = static_for(prompts, weighting)
    length = np.asarray([estimate_tokens(p) for p in prompts], dtype=np.float64)
    random = np.random.default_rng(0).random(len(prompts))
    results: dict[str, object] = {
        "n": len(prompts),
        "weak_accuracy": float(weak.mean()),
        "strong_accuracy": float(strong.mean()),
        "baselines": [
            evaluate_router(name, s, weak, strong).model_dump()
            for name, s in (("random", random), ("length", length), ("oracle", oracle_scores(weak, strong)))
        ],
    }
    results["semantic_subject_accuracy"] = {
        name: {k: semantic_accuracy(e.encode(prompts), subjects, k) for k in (5, 20)} for name, e in embedders.items()
    }
    results["static_ms_per_prompt"] = ms_per_prompt
    print(json.dumps({k: results[k] for k in ("semantic_subject_accuracy", "static_ms_per_prompt")}))
    variants = [(f"learned, {name}", name, {}) for name in embedders] + [
        ("learned, logistic only, static zipf", "static zipf", {"neighbours": 0})
    ]
    for kind in ("stratified", "grouped"):
        for name, embedder_name, options in variants:
            embedder = embedders[embedder_name]
            scores = np.zeros(len(prompts))
            per_fold: dict[str, list[float]] = {"learned": [], "length": [], "random": []}
            started = time.perf_counter()
            for train, test in folds(kind, subjects, args.folds):
                router = LearnedRouter(embedder, **options)  # type: ignore[arg-type]
                router.fit([prompts[i] for i in train], labels[train])
                scores[test] = router.scores([prompts[i] for i in test])
                for key, s in (("learned", scores[test]), ("length", length[test]), ("random", random[test])):
                    per_fold[key].append(evaluate_router(key, s, weak[test], strong[test]).apgr)
            quality = evaluate_router(name, scores, weak, strong).model_dump()
            quality["cv"] = kind
            quality["apgr_fold_mean"] = {k: float(np.mean(v)) for k, v in per_fold.items()}
            quality["seconds"] = round(time.perf_counter() - started, 1)
            results.setdefault(kind, []).append(quality)  # type: ignore[union-attr]
            print(kind, json.dumps(quality))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "routing_routellm.json").write_text(json.dumps(results, indent=2))
    print_table(results)


def print_table(results: dict[str, object]) -> None:
    print("\n| embedder | semantic: nearest-example subject accuracy, 5 / 20 examples per subject |")
    print("|---|---|")
    for name, acc in results["semantic_subject_accuracy"].items():  # type: ignore[attr-defined]
        print(f"| {name} | {acc[5]:.3f} / {acc[20]:.3f} |")
    print("\n| router | CV | APGR | CPT(50%) | CPT(80%) | APGR, mean of folds (router / length / random) |")
    print("|---|---|---|---|---|---|")
    for row in results["baselines"]:  # type: ignore[attr-defined]
        print(f"| {row['name']} | - | {row['apgr']:.3f} | {row['cpt50']:.1%} | {row['cpt80']:.1%} | |")
    for kind in ("stratified", "grouped"):
        for row in results[kind]:  # type: ignore[attr-defined]
            m = row["apgr_fold_mean"]
            print(
                f"| {row['name']} | {kind} by subject | {row['apgr']:.3f} | {row['cpt50']:.1%} | {row['cpt80']:.1%} "
                f"| {m['learned']:.3f} / {m['length']:.3f} / {m['random']:.3f} |"
            )


if __name__ == "__main__":
    main()
