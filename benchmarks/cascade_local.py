"""The local cascade: SmolLM2-135M answers first, a stronger catalogue SLM takes over when the answer looks unsure.

Task: SciFact claim verification. A fixed, seeded, label-balanced sample of train claims that have evidence; the
prompt holds the claim and its evidence sentences (the rationale sentences of the cited abstract) and asks "Does the
evidence support the claim?"; the answer is yes (SUPPORT) or no (CONTRADICT), grammar-constrained through
``with_structured_output`` (JSON schema with an enum). Greedy decoding, so every answer is reproducible.

Steps: both routes answer every claim (the small one with ``include_raw`` to keep its token log-probabilities);
the confidence signals are computed for each small answer (log-prob geometric mean / mean / min from
``response_metadata["confidence"]``; the label's own probability, ``LogprobConfidence(values_only=True)``, i.e. only
the tokens inside JSON values, not the braces and keys the grammar forces; and a self-check: P("yes") of the small
model asked whether its answer is correct). Deterministic answers of the strong route and the self-check are cached
in benchmarks/out/cascade_local_cache.json, so a rerun only repeats the small model.
For each signal, escalating the least confident x% gives accuracy vs share of escalations; "gap recovered" =
(cascade accuracy - small accuracy) / (strong accuracy - small accuracy). Finally the real
``RoutedChatModel`` cascade runs end to end with the best signal's threshold for 30% escalations, as a check that
the routed model does what the simulation says.

    python benchmarks/cascade_local.py [--n 120] [--strong qwen2.5-coder-1.5b-instruct] [--seed 0]
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel

from slmkit.agent import CATALOGUE, ChatLocalSLM
from slmkit.routing import Cascade, LogprobConfidence, Route, RoutedChatModel, RoutingDecision, RoutingPolicy
from slmkit.routing.cascade import SelfCheckConfidence
from slmkit.routing.request import RoutingRequest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "scifact"
OUT = ROOT / "benchmarks" / "out"
SHARES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
SYSTEM = "You check scientific claims against evidence from a paper."
LABELS = {"yes": "SUPPORT", "no": "CONTRADICT"}


class Verdict(BaseModel):
    """Does the evidence support the claim? yes (it supports it) or no (it contradicts it)."""

    answer: Literal["yes", "no"]


def load_sample(n: int, seed: int) -> list[dict[str, Any]]:
    corpus = {}
    with gzip.open(DATA / "corpus.jsonl.gz", "rt") as fh:
        for line in fh:
            doc = json.loads(line)
            corpus[doc["_id"]] = doc
    by_label: dict[str, list[dict[str, Any]]] = {"SUPPORT": [], "CONTRADICT": []}
    seen = set()
    for line in (DATA / "train_claims.jsonl").open():
        claim = json.loads(line)
        if claim["evidence_label"] in by_label and claim["_id"] not in seen and claim["evidence_doc_id"] in corpus:
            seen.add(claim["_id"])
            doc = corpus[claim["evidence_doc_id"]]
            evidence = " ".join(doc["sentences"][i] for i in claim["evidence_sentences"] if i < len(doc["sentences"]))
            by_label[claim["evidence_label"]].append(
                {"id": claim["_id"], "claim": claim["text"], "evidence": evidence, "label": claim["evidence_label"]}
            )
    rng = random.Random(seed)
    sample = [c for items in by_label.values() for c in rng.sample(sorted(items, key=lambda c: c["id"]), n // 2)]
    rng.shuffle(sample)
    return sample


def messages(item: dict[str, Any]) -> list[Any]:
    question = f"Evidence: {item['evidence']}\n\nClaim: {item['claim']}\n\nDoes the evidence support the claim?"
    return [SystemMessage(SYSTEM), HumanMessage(question)]


def answer(llm: ChatLocalSLM, item: dict[str, Any]) -> tuple[str | None, Any]:
    out = llm.with_structured_output(Verdict, include_raw=True).invoke(messages(item))
    parsed = out["parsed"]
    return (LABELS[parsed.answer] if parsed else None), out["raw"]


class Cache:
    """Answers of the deterministic (greedy) calls that do not change between runs, kept in benchmarks/out."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}

    def get(self, key: str, compute: Any) -> Any:
        if key not in self.data:
            self.data[key] = compute()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.data))
        return self.data[key]


def gap_curve(conf: np.ndarray, small_ok: np.ndarray, strong_ok: np.ndarray) -> list[dict[str, float]]:
    order = np.argsort(conf, kind="stable")  # least confident first
    rows = []
    for share in SHARES:
        escalate = np.zeros(len(conf), dtype=bool)
        escalate[order[: round(share * len(conf))]] = True
        acc = float(np.where(escalate, strong_ok, small_ok).mean())
        gap = float(strong_ok.mean() - small_ok.mean())
        rows.append({"share": share, "accuracy": acc, "gap_recovered": (acc - small_ok.mean()) / gap if gap else 0.0})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--small", default="smollm2-135m-instruct")
    default_strong = (
        "qwen2.5-coder-1.5b-instruct" if "qwen2.5-coder-1.5b-instruct" in CATALOGUE else "qwen2.5-coder-0.5b-instruct"
    )
    parser.add_argument("--strong", default=default_strong)
    parser.add_argument("--no-end-to-end", action="store_true", help="skip the RoutedChatModel run at 30%%")
    args = parser.parse_args()

    sample = load_sample(args.n, args.seed)
    gold = np.asarray([c["label"] for c in sample])
    small = ChatLocalSLM(model=args.small, temperature=0.0, max_tokens=16, n_ctx=2048, seed=0, logprobs=True)
    strong = ChatLocalSLM(model=args.strong, temperature=0.0, max_tokens=16, n_ctx=2048, seed=0)
    self_check = SelfCheckConfidence()
    label_prob = LogprobConfidence(measure="geometric_mean_prob", values_only=True)
    cache = Cache(OUT / "cascade_local_cache.json")
    records: list[dict[str, Any]] = []
    started = time.perf_counter()
    for i, item in enumerate(sample):
        label, raw = answer(small, item)
        request = RoutingRequest(messages(item))
        record = {"id": item["id"], "gold": item["label"], "small": label, **raw.response_metadata["confidence"]}
        record["label_prob"] = label_prob.score(request, raw, small)
        record["self_check"] = cache.get(
            f"self_check|{args.small}|{item['id']}",
            lambda request=request, raw=raw: self_check.score(request, raw, small),
        )
        record["strong"] = cache.get(f"answer|{args.strong}|{item['id']}", lambda item=item: answer(strong, item)[0])
        records.append(record)
        if (i + 1) % 20 == 0:
            print(f"{i + 1}/{len(sample)} items, {time.perf_counter() - started:.0f} s", flush=True)
    seconds_both = time.perf_counter() - started
    small_ok = np.asarray([r["small"] for r in records]) == gold
    strong_ok = np.asarray([r["strong"] for r in records]) == gold
    signals = ["geometric_mean_prob", "mean_prob", "min_prob", "label_prob", "self_check"]
    curves = {}
    for name in signals:
        conf = np.asarray([np.nan if r[name] is None else r[name] for r in records], dtype=np.float64)
        curves[name] = gap_curve(np.nan_to_num(conf, nan=-1.0), small_ok, strong_ok)
    at30 = {name: next(r for r in rows if r["share"] == 0.3) for name, rows in curves.items()}
    best = max((s for s in signals if s != "self_check"), key=lambda s: at30[s]["gap_recovered"])
    end_to_end = None if args.no_end_to_end else run_cascade(small, strong, sample, records, best)
    result = {
        "n": len(sample),
        "seed": args.seed,
        "small": args.small,
        "strong": args.strong,
        "small_accuracy": float(small_ok.mean()),
        "strong_accuracy": float(strong_ok.mean()),
        "curves": curves,
        "at_30_percent": at30,
        "end_to_end": end_to_end,
        "seconds_both_routes": round(seconds_both, 1),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "cascade_local.json").write_text(json.dumps(result, indent=2))
    (OUT / "cascade_local_records.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    print_table(result)


def run_cascade(
    small: ChatLocalSLM, strong: ChatLocalSLM, sample: list[dict[str, Any]], records: list[dict[str, Any]], measure: str
) -> dict[str, Any]:
    """The real RoutedChatModel cascade, threshold at the 30% quantile of the measure on this sample."""
    values = np.asarray([r[measure] for r in records], dtype=np.float64)
    threshold = float(np.quantile(values, 0.3))
    if measure == "label_prob":
        confidence = LogprobConfidence(measure="geometric_mean_prob", values_only=True)
    else:
        confidence = LogprobConfidence(measure=measure)  # type: ignore[arg-type]
    policy = RoutingPolicy(
        routes={"small": Route(model=small, local=True), "strong": Route(model=strong, local=True)},
        cascade=Cascade(first="small", then="strong", escalate_below=threshold, confidence=confidence),
    )
    routed = RoutedChatModel(policy=policy).with_structured_output(Verdict, include_raw=True)
    started = time.perf_counter()
    correct = escalated = 0
    for item in sample:
        out = routed.invoke(messages(item))
        decision = RoutingDecision.from_message(out["raw"])
        escalated += decision.escalated
        correct += out["parsed"] is not None and LABELS[out["parsed"].answer] == item["label"]
    return {
        "measure": measure,
        "threshold": threshold,
        "escalation_share": escalated / len(sample),
        "accuracy": correct / len(sample),
        "seconds": round(time.perf_counter() - started, 1),
    }


def print_table(result: dict[str, Any]) -> None:
    print(
        f"\nn={result['n']} small={result['small']} acc {result['small_accuracy']:.3f}, strong={result['strong']} "
        f"acc {result['strong_accuracy']:.3f}"
    )
    print("| signal | " + " | ".join(f"{s:.0%}" for s in SHARES) + " | gap recovered at 30% |")
    print("|---" * (len(SHARES) + 2) + "|")
    for name, rows in result["curves"].items():
        cells = " | ".join(f"{r['accuracy']:.3f}" for r in rows)
        print(f"| {name} | {cells} | {result['at_30_percent'][name]['gap_recovered']:.0%} |")
    if result["end_to_end"]:
        print("end to end:", json.dumps(result["end_to_end"]))


if __name__ == "__main__":
    main()
