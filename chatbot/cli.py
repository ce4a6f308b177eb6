"""The `chatbot` command: `serve`, `kb add|list|remove|rebuild`, `sitekey add|list|remove`,
`privacy purge|export|erase`, `audit list|verify`, `user add|list|role|password|remove`, `ask`, `eval`.

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

    kb = commands.add_parser("kb", help="the knowledge base: add, list, remove documents; rebuild the index")
    kb_commands = kb.add_subparsers(dest="kb_command", required=True)
    add = kb_commands.add_parser("add", help="add documents (a new version of a known name replaces it)")
    add.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files, or folders to add every file under")
    add.add_argument("--json", action="store_true", help="print one JSON object: added, replaced, unchanged, refused, version")
    add.add_argument("--dry-run", action="store_true", help="do not publish: replay the last 30 days' questions and the labelled sets in "
                     "<data_dir>/evalsets/ on the changed version and print what would change (exit 1 if a labelled question gets worse)")
    add.set_defaults(run=_kb_add)
    listing = kb_commands.add_parser("list", help="list the documents")
    listing.add_argument("--json", action="store_true", help="print a JSON list of documents")
    listing.set_defaults(run=_kb_list)
    remove = kb_commands.add_parser("remove", help="remove documents and all their chunks")
    remove.add_argument("ids", nargs="+", metavar="ID", help="a document's id (or its name), from `chatbot kb list`")
    remove.add_argument("--dry-run", action="store_true", help="do not remove: replay questions on the changed version, as kb add --dry-run")
    remove.set_defaults(run=_kb_remove)
    rebuild = kb_commands.add_parser("rebuild", help="re-read, re-chunk and re-embed every document")
    rebuild.set_defaults(run=_kb_rebuild)

    sitekey = commands.add_parser("sitekey", help="site keys: what a website's widget tag carries, with its allowed origins")
    sitekey_commands = sitekey.add_subparsers(dest="sitekey_command", required=True)
    sitekey_add = sitekey_commands.add_parser("add", help="create a site key and print it")
    sitekey_add.add_argument("name", help="the website's name")
    sitekey_add.add_argument("--origin", action="append", required=True, help="an allowed origin, e.g. https://shop.example.com (repeat for several)")
    sitekey_add.set_defaults(run=_sitekey_add)
    sitekey_list = sitekey_commands.add_parser("list", help="list the site keys")
    sitekey_list.set_defaults(run=_sitekey_list)
    sitekey_remove = sitekey_commands.add_parser("remove", help="delete a site key: widgets using it stop working")
    sitekey_remove.add_argument("key")
    sitekey_remove.set_defaults(run=_sitekey_remove)

    privacy = commands.add_parser("privacy", help="customers' data: apply the retention period, export or erase a visitor's or a conversation's data")
    privacy_commands = privacy.add_subparsers(dest="privacy_command", required=True)
    purge = privacy_commands.add_parser("purge", help="delete conversations older than privacy.retention_days now (the server also does it daily)")
    purge.set_defaults(run=_privacy_purge)
    for name, helptext, run in (("export", "print a visitor's or a conversation's data as JSON", _privacy_export), ("erase", "delete a visitor's or a conversation's data", _privacy_erase)):
        sub = privacy_commands.add_parser(name, help=helptext)
        which = sub.add_mutually_exclusive_group(required=True)
        which.add_argument("--visitor", help="a visitor id (the widget's, or `chat-page`)")
        which.add_argument("--conversation", help="a conversation id (from the admin page)")
        sub.add_argument("--site-key", default="", help="only the visitor's conversations on this site key")
        sub.set_defaults(run=run)

    audit = commands.add_parser("audit", help="the audit log: who did what, hash-chained")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    audit_list = audit_commands.add_parser("list", help="the newest rows")
    audit_list.add_argument("--limit", type=int, default=50)
    audit_list.add_argument("--action", default="", help="only this action (sign-in, erase, purge, kb-add, ...)")
    audit_list.set_defaults(run=_audit_list)
    verify = audit_commands.add_parser("verify", help="check that no row was edited or deleted (exit 1 if one was)")
    verify.set_defaults(run=_audit_verify)

    user = commands.add_parser("user", help="staff users of the admin page and their roles: owner, admin, agent, viewer")
    user_commands = user.add_subparsers(dest="user_command", required=True)
    user_add = user_commands.add_parser("add", help="add a user (the password is asked for, or read from standard input with --password-stdin)")
    user_add.add_argument("name")
    user_add.add_argument("--role", required=True, choices=["owner", "admin", "agent", "viewer"])
    user_add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    user_add.set_defaults(run=_user_add)
    user_list = user_commands.add_parser("list", help="list the users and their roles")
    user_list.set_defaults(run=_user_list)
    user_role = user_commands.add_parser("role", help="change a user's role")
    user_role.add_argument("name")
    user_role.add_argument("role", choices=["owner", "admin", "agent", "viewer"])
    user_role.set_defaults(run=_user_role)
    user_password = user_commands.add_parser("password", help="set a user's password")
    user_password.add_argument("name")
    user_password.add_argument("--password-stdin", action="store_true")
    user_password.set_defaults(run=_user_password)
    user_remove = user_commands.add_parser("remove", help="remove a user")
    user_remove.add_argument("name")
    user_remove.set_defaults(run=_user_remove)

    gaps = commands.add_parser("gaps", help="what customers asked that the knowledge could not answer, grouped into topics")
    gaps_commands = gaps.add_subparsers(dest="gaps_command", required=True)
    gaps_list = gaps_commands.add_parser("list", help="the gap topics, best ranked first (count x recency x handoffs)")
    gaps_list.add_argument("--days", type=int, default=30, help="the gaps of the last N days (default 30)")
    gaps_list.add_argument("--limit", type=int, default=20, help="show the first N topics (default 20)")
    gaps_list.add_argument("--json", action="store_true", help="print one JSON object: topics, gaps, in_no_topic")
    gaps_list.set_defaults(run=_gaps_list)
    gaps_metrics = gaps_commands.add_parser("metrics", help="resolution rate, containment, handoff, abstain and thumbs-down rates per day, in all and per gap topic; time to close a gap")
    gaps_metrics.add_argument("--days", type=int, default=30)
    gaps_metrics.add_argument("--json", action="store_true")
    gaps_metrics.set_defaults(run=_gaps_metrics)
    gaps_draft = gaps_commands.add_parser("draft", help="write a draft FAQ entry for a gap topic (from the person's replies, else the LM)")
    gaps_draft.add_argument("topic", type=int, help="a topic id of `chatbot gaps list`")
    gaps_draft.add_argument("--days", type=int, default=30)
    gaps_draft.set_defaults(run=_gaps_draft)
    gaps_drafts = gaps_commands.add_parser("drafts", help="the drafts and their review")
    gaps_drafts.add_argument("--status", choices=["pending", "approved", "dismissed"])
    gaps_drafts.add_argument("--json", action="store_true")
    gaps_drafts.set_defaults(run=_gaps_drafts)
    gaps_approve = gaps_commands.add_parser("approve", help="approve a draft (optionally edited) and publish the approved ones as the document gap-answers.csv")
    gaps_approve.add_argument("draft", type=int)
    gaps_approve.add_argument("--question")
    gaps_approve.add_argument("--answer")
    gaps_approve.set_defaults(run=_gaps_approve)
    gaps_dismiss = gaps_commands.add_parser("dismiss", help="dismiss a draft, saying why")
    gaps_dismiss.add_argument("draft", type=int)
    gaps_dismiss.add_argument("--reason", required=True)
    gaps_dismiss.set_defaults(run=_gaps_dismiss)

    ask = commands.add_parser("ask", help="answer one question and print the answer")
    ask.add_argument("question")
    ask.add_argument("--json", action="store_true", help="print one JSON object: answer, mode, sources, timings")
    ask.add_argument("--history", type=Path, help="a JSON file: a list of {role, content} messages, oldest first")
    ask.set_defaults(run=_ask)

    evaluate = commands.add_parser("eval", help="measure retrieval and abstain quality on a labelled set")
    evaluate.add_argument("--knowledge", type=Path, help="knowledge.jsonl: {id, title, text} per line")
    evaluate.add_argument("--queries", type=Path, action="append", help="queries.jsonl (repeat to pool several files)")
    evaluate.add_argument("--answers", type=Path, help="score generated answers on the live knowledge base against this labelled set (bench/answers.jsonl)")
    evaluate.add_argument("--references", action="store_true", help="with --knowledge and --queries: score generated answers against each turn's 'reference' (a person's reply)")
    evaluate.add_argument("--sample", type=int, default=300, help="with --references: the in-scope turns answered (a fixed sample)")
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

    from chatbot.kb import KnowledgeBase
    from chatbot.runtime import IndexWatcher, build_dialogue_manager
    from chatbot.web.app import create_app

    manager = build_dialogue_manager(settings)
    kb = KnowledgeBase(settings, manager.retriever.embedder)
    app = create_app(manager, IndexWatcher(kb, manager).start())
    url = f"http://{settings.server.host}:{settings.server.port}"
    admin = f"{url}/admin" if settings.admin.password or _store(settings).users() else "off (`chatbot user add NAME --role owner`, or set CHATBOT_ADMIN_PASSWORD, to turn it on)"
    print(f"Kefu is serving the chat on {url}; admin page: {admin}; widget: {url}/widget.js (`chatbot sitekey add` makes a key)", file=sys.stderr, flush=True)
    # Open streams (a chat mid-answer, an idle browser tab) must not hold up a stop for long.
    uvicorn.run(app, host=settings.server.host, port=settings.server.port, log_level="warning", timeout_graceful_shutdown=5,
                proxy_headers=True, forwarded_allow_ips=settings.server.forwarded_allow_ips)
    return 0


def _knowledge_base(settings: Settings, progress: bool = False):
    """The knowledge base, made ready first (built from the knowledge folder on a new data dir)."""
    from chatbot.embeddings import make_embeddings
    from chatbot.kb import KnowledgeBase
    from chatbot.runtime import audit_folder_sync

    kb = KnowledgeBase(settings, make_embeddings(settings.embeddings, settings.model_cache_dir))
    kb.open(progress=_progress_printer(progress), on_sync=audit_folder_sync(settings))
    return kb


def _kb_add(settings: Settings, args: argparse.Namespace) -> int:
    from chatbot.kb import Upload, chunks_label

    uploads, missing = [], []
    for path in args.paths:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
            uploads += [Upload(p.relative_to(path).as_posix(), p.read_bytes()) for p in files]
        elif path.is_file():
            uploads.append(Upload(path.name, path.read_bytes()))
        else:
            missing.append(f"{path}: no such file or folder; check the path")
    if args.dry_run:
        return _dry_run(settings, uploads=uploads, missing=missing)
    report = _knowledge_base(settings, not args.json).add(uploads, _progress_printer(not args.json))
    report.refused = missing + report.refused
    if report.added or report.replaced:
        _store(settings).audit(_cli_actor(), "kb-add", ", ".join(d["name"] for d in report.added + report.replaced)[:300], detail={"version": report.version})
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False))
    else:
        for label, docs in (("added", report.added), ("replaced", report.replaced)):
            for doc in docs:
                print(f"{label}: {doc['name']} ({doc['type']}, {chunks_label(doc['chunks'])}, id {doc['id']})")
        for name in report.unchanged:
            print(f"unchanged: {name} (already in the knowledge base)")
        for error in report.refused:
            print(f"refused: {error}")
        print(f"index version {report.version} ({chunks_label(report.embedded_chunks)} embedded in {report.seconds:.1f} s)")
    return 1 if report.refused else 0


def _kb_list(settings: Settings, args: argparse.Namespace) -> int:
    from chatbot.evaluation import calibration_lines
    from chatbot.kb import chunks_label

    manifest = _knowledge_base(settings).versions.manifest() or {}
    docs = manifest.get("documents", [])
    if args.json:
        print(json.dumps(docs, ensure_ascii=False))
        return 0
    print(f"index version {manifest.get('version')}: {len(docs)} documents, {manifest.get('chunks', 0)} chunks")
    for d in docs:
        print(f"{d['id']}  {d['name']}  {d['type']}  {chunks_label(d['chunks'])}  {d['size'] / 1024:.1f} KB  added {d['added']}  ({d['origin']})")
    for error in manifest.get("refused", []):
        print(f"refused from the knowledge folder: {error}")
    for question in manifest.get("edited", []):
        print(f"edited: the FAQ entry \"{question}\" is answered by a row that replaces it (a `replaces` column)")
    for line in calibration_lines(manifest.get("calibration")):
        print(line)
    return 0


def _kb_remove(settings: Settings, args: argparse.Namespace) -> int:
    from chatbot.kb import chunks_label

    if args.dry_run:
        return _dry_run(settings, remove=tuple(args.ids))
    report = _knowledge_base(settings).remove(*args.ids)
    if report.removed:
        _store(settings).audit(_cli_actor(), "kb-remove", ", ".join(d["name"] for d in report.removed)[:300], detail={"version": report.version})
    for doc in report.removed:
        print(f"removed: {doc['name']} (id {doc['id']}, {chunks_label(doc['chunks'])}); index version {report.version}")
    return 0


def _dry_run(settings: Settings, uploads=(), remove: tuple[str, ...] = (), missing: list[str] | None = None) -> int:
    """A change tried on a shadow version and replayed (`chatbot/replay.py`); nothing goes live."""
    from chatbot.replay import EVALSETS, labelled_questions, lines, replay, stored_questions
    from chatbot.runtime import build_dialogue_manager

    manager = build_dialogue_manager(settings)
    report = _knowledge_base(settings).try_change(list(uploads), remove)
    for error in (missing or []) + report.refused:
        print(f"refused: {error}")
    refused = bool(missing or report.refused)  # as `kb add` does: a refused file is exit 1
    if report.index is None:
        print("nothing would change")
        return 1 if refused else 0
    changed = ", ".join(f"{what} {d['name']}" for what, docs in (("add", report.added), ("replace", report.replaced), ("remove", report.removed)) for d in docs)
    print(f"tried (not published): {changed}")
    asked = stored_questions(_store(settings)) + labelled_questions(settings.data_dir / EVALSETS)
    result = replay(manager, report.index, asked)
    for line in lines(result):
        print(line)
    return 1 if result["harmful"] or refused else 0


def _kb_rebuild(settings: Settings, args: argparse.Namespace) -> int:
    kb = _knowledge_base(settings, True)
    report = kb.rebuild(_progress_printer(True))
    index = report.index
    print(f"rebuilt index {index.version}: {len(kb.documents(index))} documents, {len(index.chunks)} chunks with {index.manifest['embedder']} in {kb.versions}")
    for error in report.refused + index.manifest.get("refused", []):
        print(f"refused: {error}")
    return 1 if report.refused or index.manifest.get("refused") else 0


def _progress_printer(show: bool):
    """A progress callback drawing a tqdm bar on stderr once work starts (none when `show` is false)."""
    if not show:
        return None
    from tqdm import tqdm

    bars: list[tqdm] = []

    def progress(fraction: float, text: str) -> None:
        if not bars:
            bars.append(tqdm(total=100, file=sys.stderr, leave=False, bar_format="{percentage:3.0f}%|{bar:20}| {desc}"))
        bars[0].n = round(100 * fraction)
        bars[0].set_description_str(text[:70])
        if fraction >= 1.0:
            bars[0].close()

    return progress


def _store(settings: Settings):
    from chatbot.store import Store, database_url

    return Store(database_url(settings.database.url, settings.data_dir))


def _sitekey_add(settings: Settings, args: argparse.Namespace) -> int:
    store = _store(settings)
    site = store.create_site_key(args.name, args.origin)
    store.audit(_cli_actor(), "sitekey-add", f"{site.key} ({args.name})", detail={"origins": site.origins})
    print(site.key)
    print(f"allowed origins: {' '.join(site.origins)}", file=sys.stderr)
    print(f'embed: <script src="http://{settings.server.host}:{settings.server.port}/widget.js" data-site-key="{site.key}" async></script>', file=sys.stderr)
    return 0


def _sitekey_list(settings: Settings, args: argparse.Namespace) -> int:
    for site in _store(settings).site_keys():
        print(f"{site.key}  {site.name}  {' '.join(site.origins)}")
    return 0


def _sitekey_remove(settings: Settings, args: argparse.Namespace) -> int:
    store = _store(settings)
    if not store.delete_site_key(args.key):
        raise UserError(f"no site key '{args.key}'; `chatbot sitekey list` shows them")
    store.audit(_cli_actor(), "sitekey-remove", args.key)
    print(f"deleted {args.key}")
    return 0


def _cli_actor() -> str:
    import getpass

    return f"cli:{getpass.getuser()}"


def _privacy_purge(settings: Settings, args: argparse.Namespace) -> int:
    days = settings.privacy.retention_days
    counts = _store(settings).purge(days, actor=_cli_actor())
    print(f"purged {counts['conversations']} conversations ({counts['messages']} messages, {counts['feedback']} feedback) not updated for {days} days" if days else "privacy.retention_days is 0: conversations are kept until erased")
    return 0


def _privacy_export(settings: Settings, args: argparse.Namespace) -> int:
    store = _store(settings)
    data = store.export(site_key=args.site_key, visitor=args.visitor or "", conversation_id=args.conversation or "")
    store.audit(_cli_actor(), "export", f"conversation {args.conversation}" if args.conversation else f"visitor {args.visitor}", detail={"conversations": len(data["conversations"])})
    print(json.dumps(data, ensure_ascii=False, indent=1))
    return 0


def _privacy_erase(settings: Settings, args: argparse.Namespace) -> int:
    counts = _store(settings).erase(site_key=args.site_key, visitor=args.visitor or "", conversation_id=args.conversation or "", actor=_cli_actor())
    print(f"erased {counts['conversations']} conversations ({counts['messages']} messages, {counts['feedback']} feedback)")
    return 0 if counts["conversations"] else 1


def _audit_list(settings: Settings, args: argparse.Namespace) -> int:
    for e in _store(settings).audit_log(args.limit, action=args.action):
        print(f"{e.id}  {e.at.isoformat(timespec='seconds')}Z  {e.actor}  {e.action}  {e.target}  {e.address}  {json.dumps(e.detail, ensure_ascii=False)}")
    return 0


def _audit_verify(settings: Settings, args: argparse.Namespace) -> int:
    checked, bad = _store(settings).verify_audit()
    if bad is None:
        print(f"the audit log holds: {checked} rows, each chained to the one before")
        return 0
    where = "rows were deleted from its end" if bad == -1 else f"row {bad} was edited, or a row before it deleted"
    print(f"the audit log was altered: {where} ({checked} rows checked)")
    return 1


def _read_password(from_stdin: bool) -> str:
    import getpass

    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise UserError("the two passwords differ; run the command again")
    return first


def _user_add(settings: Settings, args: argparse.Namespace) -> int:
    from chatbot.staff import hash_password

    store = _store(settings)
    store.add_user(args.name, args.role, hash_password(_read_password(args.password_stdin)))
    store.audit(_cli_actor(), "user-add", args.name, detail={"role": args.role})
    print(f"added {args.name} ({args.role}); they sign in at /admin")
    return 0


def _user_list(settings: Settings, args: argparse.Namespace) -> int:
    for u in _store(settings).users():
        print(f"{u.name}  {u.role}  added {u.created.isoformat(timespec='seconds')}Z")
    return 0


def _user_role(settings: Settings, args: argparse.Namespace) -> int:
    store = _store(settings)
    store.update_user(args.name, role=args.role)
    store.audit(_cli_actor(), "user-role", args.name, detail={"role": args.role})
    print(f"{args.name} is now {args.role}")
    return 0


def _user_password(settings: Settings, args: argparse.Namespace) -> int:
    from chatbot.staff import hash_password

    store = _store(settings)
    store.update_user(args.name, password_hash=hash_password(_read_password(args.password_stdin)))
    store.audit(_cli_actor(), "user-password", args.name)
    print(f"the password of {args.name} is changed")
    return 0


def _user_remove(settings: Settings, args: argparse.Namespace) -> int:
    store = _store(settings)
    if not store.remove_user(args.name):
        raise UserError(f"no user '{args.name}'; `chatbot user list` shows them")
    store.audit(_cli_actor(), "user-remove", args.name)
    print(f"removed {args.name}")
    return 0


def _gaps_list(settings: Settings, args: argparse.Namespace) -> int:
    from chatbot.calibration import resolve
    from chatbot.gaps import gap_topics
    from chatbot.runtime import build_retriever

    retriever = build_retriever(settings)
    thresholds = resolve(settings.retrieval, retriever.index.manifest.get("calibration"))
    found, gaps = gap_topics(_store(settings), retriever, thresholds, days=args.days)
    alone = len(gaps) - sum(len(t.gaps) for t in found)
    if args.json:
        print(json.dumps({"topics": [t.as_dict() for t in found[: args.limit]], "gaps": len(gaps), "in_no_topic": alone}, ensure_ascii=False))
        return 0
    print(f"{len(gaps)} gap questions in the last {args.days} days: {len(found)} topics, {alone} in no topic")
    for topic in found[: args.limit]:
        signals = ", ".join(f"{name} {n}" for name, n in sorted(topic.signals.items()))
        print(f"\n#{topic.id} [{topic.lang}] {' · '.join(topic.label)}: {len(topic.gaps)} questions ({signals}), score {topic.score:.1f}, "
              f"first seen {topic.first_seen:%Y-%m-%d}, last {topic.last_seen:%Y-%m-%d}")
        for example in topic.examples:
            print(f"  - {example}")
    return 0


def _gaps_metrics(settings: Settings, args: argparse.Namespace) -> int:
    store = _store(settings)
    metrics = store.resolution_metrics(args.days) | store.topic_metrics(args.days)
    if args.json:
        print(json.dumps(metrics, ensure_ascii=False))
        return 0

    def pct(x) -> str:
        return "-" if x is None else f"{x:.0%}"

    print("day         conversations  resolved  contained  handed off  abstained  thumbs-down")
    for r in [*metrics["days"], metrics["total"] | {"day": "all"}]:
        print(f"{r['day']:<11} {r['conversations']:>13}  {pct(r['resolution_rate']):>8}  {pct(r['containment']):>9}  {pct(r['handoff_rate']):>10}"
              f"  {pct(r['abstain_rate']):>9}  {pct(r['thumbs_down_rate']):>11}")
    if metrics["topics"]:
        print("\ngap topic  day         questions  resolved  handed off  abstained  (as of the last `chatbot gaps list`)")
    for t in metrics["topics"]:
        for r in [*t["days"], t["total"] | {"day": "all"}]:
            print(f"{t['topic']:>9}  {r['day']:<11} {r['questions']:>9}  {pct(r['resolution_rate']):>8}  {pct(r['handoff_rate']):>10}  {pct(r['abstain_rate']):>9}")
        if t["days_to_close"] is not None:
            print(f"{'':>9}  closed in {t['days_to_close']} days: first asked {t['first_seen'][:10]}, draft approved {t['approved'][:10]}, "
                  f"answered since {t['answered_since'][:10]}")
        elif t["approved"]:
            print(f"{'':>9}  draft approved {t['approved'][:10]}; none of its questions answered since yet")
    return 0


def _gaps_draft(settings: Settings, args: argparse.Namespace) -> int:
    from chatbot.gaps import gap_topics, write_draft
    from chatbot.runtime import build_dialogue_manager

    manager = build_dialogue_manager(settings)
    store = _store(settings)
    found, _ = gap_topics(store, manager.retriever, manager.thresholds(), days=args.days)
    topic = next((t for t in found if t.id == args.topic), None)
    if topic is None:
        raise UserError(f"no gap topic {args.topic} in the last {args.days} days; `chatbot gaps list` shows them")
    draft = store.add_gap_draft(**write_draft(topic, manager, manager.masker))
    store.audit(_cli_actor(), "gap-draft", f"draft {draft.id} for topic {topic.id}")
    _print_draft(draft)
    return 0


def _print_draft(draft) -> None:
    from chatbot.gaps import edited_question

    print(f"draft {draft.id} ({draft.status}) for topic {draft.topic_id} [{draft.lang}]")
    print(f"  Q: {draft.question}")
    print(f"  A: {draft.answer or '(none yet: the knowledge does not say it; write one with --answer)'}")
    if draft.cites:
        print(f"  from the person's replies in conversations {', '.join(draft.cites)}")
    if draft.needs_source:
        print("  needs a source: written by the LM from the nearest passages, which did not answer these questions")
    if draft.near_entry:
        print(f"  edits the FAQ entry \"{edited_question(draft)}\": approved, its answer replaces that entry's")
    if draft.reason:
        print(f"  reason: {draft.reason} ({draft.reviewer})")


def _gaps_drafts(settings: Settings, args: argparse.Namespace) -> int:
    drafts = _store(settings).gap_drafts(args.status or "")
    if args.json:
        fields = ("id", "topic_id", "lang", "question", "answer", "cites", "needs_source", "near_entry", "status", "reason", "reviewer")
        print(json.dumps([{f: getattr(d, f) for f in fields} for d in drafts], ensure_ascii=False))
        return 0
    for draft in drafts:
        _print_draft(draft)
    return 0


def _gaps_approve(settings: Settings, args: argparse.Namespace) -> int:
    from chatbot.gaps import APPROVED_DOCUMENT, approve
    from chatbot.privacy import Masker

    store = _store(settings)
    report = approve(store, _knowledge_base(settings), Masker(settings.privacy.mask), args.draft, _cli_actor(), args.question, args.answer)
    store.audit(_cli_actor(), "gap-approve", f"draft {args.draft}", detail={"version": report.version if report else ""})
    print(f"approved draft {args.draft}; {APPROVED_DOCUMENT} is in index {report.version}" if report else f"approved draft {args.draft}")
    return 0


def _gaps_dismiss(settings: Settings, args: argparse.Namespace) -> int:
    from chatbot.gaps import dismiss

    store = _store(settings)
    dismiss(store, _knowledge_base(settings), args.draft, _cli_actor(), args.reason)
    store.audit(_cli_actor(), "gap-dismiss", f"draft {args.draft}")
    print(f"dismissed draft {args.draft}")
    return 0


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
    from chatbot.evaluation import format_report, run_answer_eval, run_eval, run_reference_eval

    progress = sys.stderr.isatty() or not args.json
    if args.answers:
        report = run_answer_eval(settings, args.answers, args.limit, progress)
        print(json.dumps(report, ensure_ascii=False) if args.json else json.dumps(report, ensure_ascii=False, indent=1))
        return 0
    if not (args.knowledge and args.queries):
        raise UserError("chatbot eval needs --knowledge and --queries (retrieval), or --answers (generated answers)")
    if args.references:
        report = run_reference_eval(settings, args.knowledge, args.queries, args.sample, progress)
        print(json.dumps(report, ensure_ascii=False) if args.json else json.dumps(report, ensure_ascii=False, indent=1))
        return 0
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
