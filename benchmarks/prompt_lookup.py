"""Prompt-lookup decoding vs plain decoding on the QA benchmark's answers, both catalogue models in one run.

The prompts are the ones ``benchmarks/qa_squad.py`` sends to the model: the same seeded SQuAD 2.0 sample, the same
knowledge base, ``Assistant(kb, AssistantConfig(model=ID))`` with the model's profile. Each question is asked once
with the model replaced by a recorder, which keeps the messages the assistant built and stops it there; questions
the assistant declines before calling a model (no passage above the profile's relevance threshold) have no answer
to time. Each recorded prompt is then answered greedily through ``ChatLocalSLM.stream`` with the profile's
``max_tokens``, by every variant in turn (the order rotates from one answer to the next, so drift on a shared
machine hits all alike):

    plain        flash_attn=True, kv_cache="q8_0", prompt_lookup=0   (the settings lookup needs, without it)
    lookup-N     the same settings, prompt_lookup=N                   (one variant per --draft value)
    plain-f16    the default settings (no flash attention, F16 KV cache), prompt_lookup=0

Before an answer's calls its prompt is evaluated once per loaded context (untimed), so every timed call reuses
the cached prompt but its last token, the same way. Decode speed is (tokens - 1) / (time from the first streamed
text to the end), as wall-clock time and as the process's CPU time (llama.cpp runs on the calling thread with
one thread; CPU time does not count the time other processes hold the core). Reported per model and variant:
decode tokens/s over all answers (sum of tokens / sum of time), the ratio to plain that way and the median of
per-answer ratios, the share of drafted tokens accepted, and on how many answers the text equals plain's.

Run it alone and pinned to one core (llama.cpp's threads spin when they share a core):

    taskset -c 1 .venv/bin/python benchmarks/prompt_lookup.py --n 24 --draft 10
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import squad_data

from slmkit.agent import Assistant, AssistantConfig, ChatLocalSLM
from slmkit.agent.llama_runtime import default_threads

MODELS = ["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"]


class _RecordedError(Exception):
    pass


class _Recorder:
    """Stands in for the assistant's chat model: keeps the answer prompt, then stops the assistant."""

    messages: Any = None

    def stream(self, messages: Any, config: Any = None, **kwargs: Any) -> Any:
        self.messages = messages
        raise _RecordedError


def answer_prompts(kb: Any, model: str, questions: list[squad_data.Question]) -> tuple[list[Any], int]:
    """The messages the assistant sends ``model`` for each question it does not decline beforehand."""
    assistant = Assistant(kb, config=AssistantConfig(model=model), guards=[])
    recorder = _Recorder()
    assistant.model = recorder
    prompts = []
    for q in questions:
        recorder.messages = None
        with contextlib.suppress(_RecordedError):
            assistant.ask(q.question)
        if recorder.messages is not None:
            prompts.append(recorder.messages)
    return prompts, assistant.config.max_tokens


def timed(llm: ChatLocalSLM, messages: Any) -> dict[str, Any]:
    """One streamed call; decode time runs from the first text to the end."""
    first_wall = first_cpu = None
    parts: list[str] = []
    usage: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    for chunk in llm.stream(messages):
        if chunk.content and first_wall is None:
            first_wall, first_cpu = time.perf_counter(), time.process_time()
        parts.append(str(chunk.content))
        if chunk.usage_metadata:
            usage, meta = dict(chunk.usage_metadata), dict(chunk.response_metadata)
    end_wall, end_cpu = time.perf_counter(), time.process_time()
    lookup = meta.get("prompt_lookup", {})
    return {
        "text": "".join(parts),
        "tokens": usage["output_tokens"],
        "cached": usage.get("input_token_details", {}).get("cache_read", 0),
        "wall": end_wall - (first_wall or end_wall),
        "cpu": end_cpu - (first_cpu or end_cpu),
        "drafted": lookup.get("drafted", 0),
        "accepted": lookup.get("accepted", 0),
    }


def compare(model: str, prompts: list[Any], max_tokens: int, drafts: list[int]) -> dict[str, Any]:
    base = ChatLocalSLM(model=model, temperature=0, max_tokens=max_tokens, flash_attn=True, kv_cache="q8_0")
    variants = {"plain": base.model_copy(update={"prompt_lookup": 0})}
    variants |= {f"lookup-{n}": base.model_copy(update={"prompt_lookup": n}) for n in drafts}
    variants["plain-f16"] = ChatLocalSLM(model=model, temperature=0, max_tokens=max_tokens, prompt_lookup=0)
    names = list(variants)
    for llm in variants.values():  # load, warm up, and calibrate the exact batch size once
        llm.invoke(prompts[0])
    exact = base.load()._exact_batches
    rows: list[dict[str, dict[str, Any]]] = []
    for i, messages in enumerate(prompts):
        for llm in (variants["plain"], variants["plain-f16"]):  # one context each: cache the prompt, untimed
            llm.invoke(messages, max_tokens=1)
        order = names[i % len(names) :] + names[: i % len(names)]
        rows.append({name: timed(variants[name], messages) for name in order})
        print(f"[{model} {i + 1}/{len(prompts)}] {rows[-1]['plain']['text'][:80]!r}", file=sys.stderr, flush=True)
    timed_rows = [r for r in rows if r["plain"]["tokens"] > 2]  # one or two tokens: no decode phase to time
    out: dict[str, Any] = {
        "model": model,
        "answers": len(rows),
        "timed": len(timed_rows),
        "max_tokens": max_tokens,
        "tokens_p50": statistics.median(r["plain"]["tokens"] for r in rows),
        "exact_batches": exact,
        "variants": {},
    }
    for name in names:
        v: dict[str, Any] = {}
        for clock in ("wall", "cpu"):
            tps = sum(r[name]["tokens"] - 1 for r in timed_rows) / sum(r[name][clock] for r in timed_rows)
            plain = sum(r["plain"]["tokens"] - 1 for r in timed_rows) / sum(r["plain"][clock] for r in timed_rows)
            v[f"{clock}_tok_s"] = tps
            v[f"{clock}_ratio"] = tps / plain
            v[f"{clock}_ratio_p50"] = statistics.median(r["plain"][clock] / r[name][clock] for r in timed_rows)
        drafted = sum(r[name]["drafted"] for r in rows)
        v["drafted"] = drafted
        v["acceptance"] = sum(r[name]["accepted"] for r in rows) / drafted if drafted else None
        v["same_text"] = sum(r[name]["text"] == r["plain"]["text"] for r in rows)
        v["different"] = [(r["plain"]["text"], r[name]["text"]) for r in rows if r[name]["text"] != r["plain"]["text"]]
        out["variants"][name] = v
    out["rows"] = rows
    return out


def _to_default(variants: dict[str, Any]) -> str:
    """Each lookup variant's speed as a ratio to the default settings (plain-f16): what a user would gain."""
    default = variants["plain-f16"]
    return ", ".join(
        f"{name} / plain-f16 {v['wall_tok_s'] / default['wall_tok_s']:.2f} (wall), "
        f"{v['cpu_tok_s'] / default['cpu_tok_s']:.2f} (CPU)"
        for name, v in variants.items()
        if name.startswith("lookup")
    )


def to_markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "| model | variant | decode tok/s (wall) | ratio to plain (all / per-answer p50) | decode tok/s (CPU) "
        "| ratio to plain (all / per-answer p50) | drafted tokens accepted | text = plain |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for name, v in r["variants"].items():
            acc = f"{v['acceptance']:.0%} of {v['drafted']}" if v["acceptance"] is not None else "-"
            lines.append(
                f"| {r['model']} | {name} | {v['wall_tok_s']:.1f} | **{v['wall_ratio']:.2f}** / "
                f"{v['wall_ratio_p50']:.2f} | {v['cpu_tok_s']:.1f} | **{v['cpu_ratio']:.2f}** / "
                f"{v['cpu_ratio_p50']:.2f} | {acc} | {v['same_text']}/{r['answers']} |"
            )
    notes = [
        f"- {r['model']}: {r['answers']} answers ({r['timed']} timed), {r['tokens_p50']:.0f} tokens p50, "
        f"max_tokens {r['max_tokens']}; largest exact batch {max(r['exact_batches'].values(), default=0)} "
        f"(draft <= {max(r['exact_batches'].values(), default=1) - 1}); {_to_default(r['variants'])}"
        for r in results
    ]
    return "\n".join([*lines, "", *notes])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--n", type=int, default=40, help="questions (the qa_squad.py sample: half answerable)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--draft", type=int, nargs="+", default=[3, 10], help="draft lengths to compare")
    parser.add_argument("--data", type=Path, default=squad_data.SQUAD)
    parser.add_argument("--kb", type=Path, default=squad_data.WORK / "qa_squad" / "kb")
    parser.add_argument("--json", type=Path, default=squad_data.WORK / "prompt_lookup.json")
    args = parser.parse_args()
    import llama_cpp

    _, questions = squad_data.load(args.data)
    questions = squad_data.sample(questions, args.n, args.seed)
    kb = squad_data.knowledge_base(args.kb, args.data)
    results = []
    for model in args.models:
        prompts, max_tokens = answer_prompts(kb, model, questions)
        results.append(compare(model, prompts, max_tokens, args.draft))
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "threads": default_threads(),
        "llama_cpp_python": llama_cpp.__version__,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    report = {"machine": machine, "args": vars(args), "results": results}
    args.json.write_text(json.dumps(report, indent=1, default=str))
    print(to_markdown(results))
    for r in results:
        for name, v in r["variants"].items():
            for a, b in v["different"] if name != "plain-f16" else []:
                print(f"\n{r['model']} {name}: text differs\n  plain:  {a!r}\n  {name}: {b!r}")


if __name__ == "__main__":
    main()
