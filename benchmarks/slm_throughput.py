"""ChatLocalSLM vs raw llama-cpp-python on the same prompts, interleaved in one run; and the prefix cache.

Part 1 (throughput): for each catalogue model, the same chat prompts go through ``ChatLocalSLM.stream`` and through
``llama_cpp.Llama.create_chat_completion(stream=True)``, alternating A-B-B-A so drift on a shared machine hits both
alike. Both use the same settings (context, threads, batch) and greedy decoding, so they generate the same tokens.
Each call starts cold (KV cache cleared). Reported: time to first token, decode tokens/s (after the first token),
and our/raw ratios of the medians.

Part 2 (prefix cache): a ~1,000-token system context with a new question each time. First call cold; second call
with the prefix cached ("with cache") and again after clearing the cache ("without cache"). Reported: TTFT ratio
second/first.

    python benchmarks/slm_throughput.py [--models ID ...] [--reps N] [--max-tokens N] [--prefix-tokens N]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage

from slmkit.agent import ChatLocalSLM, resolve_model_path
from slmkit.agent.llama_runtime import default_threads

PROMPTS = [
    "Explain in a paragraph how a refrigerator keeps food cold.",
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "List ten practical tips for writing clear technical documentation, with one sentence each.",
    "Describe the water cycle to a ten-year-old.",
]
SAMPLING = {"temperature": 0.0, "top_p": 0.9, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.1}


def _timed_stream(chunks: Any, text_of: Any) -> tuple[float, float, str]:
    start = time.perf_counter()
    first = None
    parts = []
    for chunk in chunks:
        text = text_of(chunk)
        if text and first is None:
            first = time.perf_counter()
        parts.append(text or "")
    end = time.perf_counter()
    return (first or end) - start, end - start, "".join(parts)


def run_ours(llm: ChatLocalSLM, prompt: str, max_tokens: int) -> dict[str, Any]:
    llm.load().llama.reset()
    last: dict[str, Any] = {}

    def text_of(chunk: Any) -> str:
        if chunk.usage_metadata:
            last["tokens"] = chunk.usage_metadata["output_tokens"]
        return str(chunk.content)

    ttft, total, text = _timed_stream(llm.stream(prompt, max_tokens=max_tokens), text_of)
    return {"ttft": ttft, "total": total, "text": text, "tokens": last["tokens"]}


def run_raw(raw: Any, prompt: str, max_tokens: int) -> dict[str, Any]:
    raw.reset()
    stream = raw.create_chat_completion(
        messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens, stream=True, **SAMPLING
    )
    ttft, total, text = _timed_stream(stream, lambda c: c["choices"][0]["delta"].get("content"))
    return {"ttft": ttft, "total": total, "text": text}


def throughput(model_id: str, reps: int, max_tokens: int) -> dict[str, Any]:
    from llama_cpp import Llama

    threads = default_threads()
    llm = ChatLocalSLM(model=model_id, n_ctx=4096, n_threads=threads, n_batch=512, **SAMPLING)
    llm.load()
    raw = Llama(
        model_path=str(resolve_model_path(model_id)),
        n_ctx=4096,
        n_threads=threads,
        n_threads_batch=threads,
        n_batch=512,
        verbose=False,
    )
    run_ours(llm, "Warm up.", 8)
    run_raw(raw, "Warm up.", 8)
    ours: list[dict[str, Any]] = []
    base: list[dict[str, Any]] = []
    mismatches = 0
    for rep in range(reps):
        for prompt in PROMPTS:
            order = (run_ours, run_raw) if rep % 2 == 0 else (run_raw, run_ours)
            results = {}
            for fn in order:
                results[fn] = fn(llm if fn is run_ours else raw, prompt, max_tokens)
            a, b = results[run_ours], results[run_raw]
            b["tokens"] = a["tokens"]  # greedy decoding: the same tokens (checked below)
            mismatches += a["text"] != b["text"]
            ours.append(a)
            base.append(b)

    def decode_tps(r: dict[str, Any]) -> float:
        return float((r["tokens"] - 1) / max(r["total"] - r["ttft"], 1e-9))

    def summary(rows: list[dict[str, Any]]) -> dict[str, float]:
        return {
            "ttft_ms_p50": 1000 * statistics.median(r["ttft"] for r in rows),
            "decode_tok_s_p50": statistics.median(decode_tps(r) for r in rows),
            "e2e_tok_s_p50": statistics.median(r["tokens"] / r["total"] for r in rows),
            "tokens_p50": statistics.median(r["tokens"] for r in rows),
        }

    s_ours, s_raw = summary(ours), summary(base)
    pair_ratios = [decode_tps(a) / decode_tps(b) for a, b in zip(ours, base, strict=True)]
    return {
        "model": model_id,
        "calls_each": len(ours),
        "ours": s_ours,
        "raw": s_raw,
        "decode_ratio_of_medians": s_ours["decode_tok_s_p50"] / s_raw["decode_tok_s_p50"],
        "decode_ratio_paired_median": statistics.median(pair_ratios),
        "e2e_ratio_of_medians": s_ours["e2e_tok_s_p50"] / s_raw["e2e_tok_s_p50"],
        "ttft_ratio_of_medians": s_ours["ttft_ms_p50"] / s_raw["ttft_ms_p50"],
        "text_mismatches": mismatches,
    }


def prefix_cache(model_id: str, reps: int, prefix_tokens: int) -> dict[str, Any]:
    llm = ChatLocalSLM(model=model_id, n_ctx=4096, max_tokens=8, **SAMPLING)
    local = llm.load()
    records: list[str] = []
    context = "You answer questions about these records."
    while len(local.tokenize(context)) < prefix_tokens:  # grow the shared prefix to the requested length
        i = len(records)
        records.append(f"Record {i}: the shipment {i} left the warehouse on day {i % 28 + 1}.")
        context = "You answer questions about these records.\n" + " ".join(records)

    def ttft(question: str) -> tuple[float, int, int]:
        start = time.perf_counter()
        usage: dict[str, Any] = {}
        for chunk in llm.stream([SystemMessage(context), HumanMessage(question)]):
            if chunk.content and "t" not in usage:
                usage["t"] = time.perf_counter() - start
            if chunk.usage_metadata:
                usage["in"] = chunk.usage_metadata["input_tokens"]
                usage["cached"] = chunk.usage_metadata["input_token_details"]["cache_read"]
        return usage.get("t", time.perf_counter() - start), usage["in"], usage["cached"]

    firsts, warm, cold = [], [], []
    prompt_tokens = cached = 0
    for rep in range(reps):
        local.llama.reset()
        first, prompt_tokens, _ = ttft(f"When did shipment {rep} leave?")
        second, _, cached = ttft(f"When did shipment {rep + 50} leave?")
        local.llama.reset()
        third, _, _ = ttft(f"When did shipment {rep + 90} leave?")
        firsts.append(first)
        warm.append(second)
        cold.append(third)
    f, w, c = statistics.median(firsts), statistics.median(warm), statistics.median(cold)
    return {
        "model": model_id,
        "prompt_tokens": prompt_tokens,
        "cached_tokens_second_call": cached,
        "first_ttft_ms": 1000 * f,
        "second_ttft_ms_with_cache": 1000 * w,
        "second_ttft_ms_without_cache": 1000 * c,
        "ratio_with_cache": w / f,
        "ratio_without_cache": c / f,
    }


def to_markdown(result: dict[str, Any]) -> str:
    lines = [
        "| model | calls | TTFT p50 ours / raw (ms) | decode tok/s p50 ours / raw | decode ratio (medians) |"
        " decode ratio (paired median) | end-to-end ratio | same text |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in result["throughput"]:
        lines.append(
            f"| {t['model']} | {t['calls_each']} | {t['ours']['ttft_ms_p50']:.0f} / {t['raw']['ttft_ms_p50']:.0f} | "
            f"{t['ours']['decode_tok_s_p50']:.1f} / {t['raw']['decode_tok_s_p50']:.1f} | "
            f"**{t['decode_ratio_of_medians']:.3f}** | {t['decode_ratio_paired_median']:.3f} | "
            f"{t['e2e_ratio_of_medians']:.3f} | {t['calls_each'] - t['text_mismatches']}/{t['calls_each']} |"
        )
    lines += [
        "",
        "| model | prompt tokens | cached on 2nd call | 1st TTFT (ms) | 2nd TTFT with cache (ms) |"
        " 2nd TTFT without cache (ms) | ratio with cache | ratio without |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in result["prefix_cache"]:
        lines.append(
            f"| {p['model']} | {p['prompt_tokens']} | {p['cached_tokens_second_call']} | {p['first_ttft_ms']:.0f} | "
            f"{p['second_ttft_ms_with_cache']:.0f} | {p['second_ttft_ms_without_cache']:.0f} | "
            f"**{p['ratio_with_cache']:.3f}** | {p['ratio_without_cache']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"])
    parser.add_argument("--reps", type=int, default=4, help="repetitions of the prompt set (A-B-B-A order)")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--prefix-tokens", type=int, default=1000, help="length of the repeated prefix")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/out/slm_throughput.json"))
    args = parser.parse_args()
    import llama_cpp

    result = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": default_threads(),
            "llama_cpp_python": llama_cpp.__version__,
        },
        "throughput": [throughput(m, args.reps, args.max_tokens) for m in args.models],
        "prefix_cache": [prefix_cache(m, max(3, args.reps), args.prefix_tokens) for m in args.models],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
