"""Learned router vs baselines on RouteLLM's MMLU set: APGR, CPT(50%), CPT(80%), as RouteLLM computes them.

Data: ../shared/data/routing/mmlu/*.csv, per-question correctness of a weak (Mixtral-8x7B) and a strong
(GPT-4-1106) model on 57 MMLU subjects; prompts in mmlu_contaminated_prompts.jsonl are excluded, as RouteLLM does.
Label for training: 1 = weak wrong and strong right (the only case where the strong call pays off).

Routers: random (seed 0), prompt length (tiktoken tokens: longer -> strong), the learned router
(``slmkit.routing.LearnedRouter()`` with its defaults, MiniLM embeddings + structure features), and the oracle.
The learned router is cross-validated in 5 folds, two ways:

- ``stratified``: folds stratified by subject (every subject is in every fold, 80% train / 20% test), as for a
  router trained on past traffic of the same domains;
- ``grouped``: folds grouped by subject (test subjects never seen in training), a harder transfer test.

APGR/CPT are computed on the pooled out-of-fold scores (RouteLLM's 10 quantile bins) and, as a check against
fold-to-fold shifts in score scale, averaged over the folds. Embeddings of the 14k prompts are cached in
benchmarks/out/ (keyed by embedder and prompt text), so reruns take seconds.

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
from slmkit.routing.embedding import default_embeddings, embed_texts
from slmkit.routing.evaluation import evaluate_router, oracle_scores

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
    """The default embedder behind a text -> vector table (filled once, saved in benchmarks/out)."""

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
        vectors = embed_texts(default_embeddings(), prompts)
        print(f"embedded {len(prompts)} prompts in {time.perf_counter() - started:.0f} s")
        OUT.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors)
    return CachedEmbeddings(dict(zip(prompts, vectors, strict=True)))


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
    embedder = embeddings_for(prompts)
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
    for kind in ("stratified", "grouped"):
        variants = {"learned": {}, "learned (logistic only)": {"neighbours": 0}}
        for name, options in variants.items():
            scores = np.zeros(len(prompts))
            per_fold: dict[str, list[float]] = {"learned": [], "length": [], "random": []}
            started = time.perf_counter()
            for train, test in folds(kind, subjects, args.folds):
                router = LearnedRouter(embedder, **options).fit([prompts[i] for i in train], labels[train])
                scores[test] = router.scores([prompts[i] for i in test])
                for key, s in (("learned", scores[test]), ("length", length[test]), ("random", random[test])):
                    per_fold[key].append(evaluate_router(key, s, weak[test], strong[test]).apgr)
            quality = evaluate_router(name, scores, weak, strong).model_dump()
            quality["apgr_fold_mean"] = {k: float(np.mean(v)) for k, v in per_fold.items()}
            quality["seconds"] = round(time.perf_counter() - started, 1)
            results.setdefault(kind, []).append(quality)  # type: ignore[union-attr]
            print(kind, json.dumps(quality))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "routing_routellm.json").write_text(json.dumps(results, indent=2))
    print_table(results)


def print_table(results: dict[str, object]) -> None:
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
