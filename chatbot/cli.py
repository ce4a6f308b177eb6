"""The `chatbot` command: `serve`, `index build`, `ask`, `eval`.

Errors Kefu raises on purpose print one line (`error: ...`) and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from chatbot.config import Settings, load_settings
from chatbot.errors import ChatbotError, UserError


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose or args.command == "serve" else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = load_settings(args.profile, overrides=_overrides(args))
        return args.run(settings, args)
    except ChatbotError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatbot", description="Kefu: a self-hosted customer-service chatbot.")
    parser.add_argument("--profile", help="configs/<profile>.yaml to use (default: $CHATBOT_PROFILE or 'default')")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the chat page")
    serve.add_argument("--port", type=int, help="port (default: server.port, 7860)")
    serve.add_argument("--host", help="address to listen on (default: server.host, 127.0.0.1)")
    serve.set_defaults(run=_serve)

    index = commands.add_parser("index", help="the knowledge index")
    index_commands = index.add_subparsers(dest="index_command", required=True)
    build = index_commands.add_parser("build", help="rebuild the index from the knowledge folder")
    build.set_defaults(run=_index_build)

    ask = commands.add_parser("ask", help="answer one question and print the answer")
    ask.add_argument("question")
    ask.add_argument("--json", action="store_true", help="print one JSON object: answer, mode, sources, timings")
    ask.add_argument("--history", type=Path, help="a JSON file: a list of {role, content} messages, oldest first")
    ask.set_defaults(run=_ask)

    evaluate = commands.add_parser("eval", help="measure retrieval and abstain quality on a labelled set")
    evaluate.add_argument("--knowledge", type=Path, help="knowledge.jsonl: {id, title, text} per line")
    evaluate.add_argument("--queries", type=Path, action="append", help="queries.jsonl (repeat to pool several files)")
    evaluate.add_argument("--answers", type=Path, help="score generated answers on the live knowledge base against this labelled set (bench/answers.jsonl)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--limit", type=int, help="use only the first N queries of each file")
    evaluate.set_defaults(run=_eval)
    return parser


def _overrides(args: argparse.Namespace) -> dict:
    overrides = {}
    if getattr(args, "port", None):
        overrides["server.port"] = args.port
    if getattr(args, "host", None):
        overrides["server.host"] = args.host
    return overrides


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from chatbot.runtime import build_dialogue_manager
    from chatbot.web.app import create_app

    app = create_app(build_dialogue_manager(settings))
    print(f"Kefu is serving the chat on http://{settings.server.host}:{settings.server.port}", file=sys.stderr, flush=True)
    # Open streams (a chat mid-answer, an idle browser tab) must not hold up a stop for long.
    uvicorn.run(app, host=settings.server.host, port=settings.server.port, log_level="warning", timeout_graceful_shutdown=5)
    return 0


def _index_build(settings: Settings, args: argparse.Namespace) -> int:
    from chatbot.embeddings import make_embeddings
    from chatbot.index import build_index

    index = build_index(settings.knowledge_dir, settings.index_dir, make_embeddings(settings.embeddings))
    print(f"built index {index.version}: {len(index.chunks)} chunks ({index.manifest['faqs']} FAQs) with {index.manifest['embedder']} in {settings.index_dir}")
    return 1 if index.manifest["skipped"] else 0  # each skipped file was logged with what to do


def _ask(settings: Settings, args: argparse.Namespace) -> int:
    from chatbot.runtime import build_dialogue_manager

    history = _read_history(args.history) if args.history else []
    manager = build_dialogue_manager(settings)
    try:
        reply = manager.respond(args.question, history)
    except UserError as e:
        if args.json:
            print(json.dumps({"error": str(e)}, ensure_ascii=False))
        else:
            print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(reply.finish().as_dict(), ensure_ascii=False))
        return 0
    for piece in reply:
        print(piece, end="", flush=True)
    print(f"\n\n[{reply.mode}]")
    for n, source in enumerate(reply.sources, 1):
        print(f"{n}. {source.title} — {source.heading} ({source.source}, {source.score:.2f})")
    return 0


def _eval(settings: Settings, args: argparse.Namespace) -> int:
    from chatbot.evaluation import format_report, run_answer_eval, run_eval

    progress = sys.stderr.isatty() or not args.json
    if args.answers:
        report = run_answer_eval(settings, args.answers, args.limit, progress)
        print(json.dumps(report, ensure_ascii=False) if args.json else json.dumps(report, ensure_ascii=False, indent=1))
        return 0
    if not (args.knowledge and args.queries):
        raise UserError("chatbot eval needs --knowledge and --queries (retrieval), or --answers (generated answers)")
    report = run_eval(settings, args.knowledge, args.queries, args.limit, progress)
    print(json.dumps(report) if args.json else format_report(report))
    return 0


def _read_history(path: Path) -> list[dict]:
    try:
        history = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"--history {path}: cannot read it as JSON ({e})") from e
    if not isinstance(history, list) or not all(
        isinstance(m, dict) and m.get("role") in ("user", "assistant") and isinstance(m.get("content"), str) for m in history
    ):
        raise UserError(f"--history {path}: must be a JSON list of {{\"role\": \"user\"|\"assistant\", \"content\": \"...\"}}")
    return history


if __name__ == "__main__":
    sys.exit(main())
