"""The admin page (Gradio, at `/admin`, for signed-in staff: `chatbot/staff.py`), in five tabs:

- Knowledge base: the documents, uploads of several files at once with progress, replace (upload a
  file of the same name) and remove, rebuild, and the live index version. Every change goes
  through `KnowledgeBase`; the chat answers from the new version as soon as it is live.
- Conversations: the inbox (filter: handed off, abstained, thumbs down), one conversation's
  messages, a reply to a handed-off customer, "hand back to the bot", and daily counts.
  Export or erase one conversation's data, or every conversation of its visitor.
- Site keys: the keys websites embed the widget with, each with its allowed origins.
- Staff: the users and their roles (owners only).
- Audit log: who did what, filtered, and whether the chain holds (admins and owners).

Each role sees only what it may do, and every action checks the role on the server again (`need`):
a hidden button is not the only guard. Actions that change something, and views of a conversation,
are written to the audit log with the staff user's name and masked address.

Everything a customer, the bot or an admin wrote is shown as plain text (table cells), never as HTML."""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr

from chatbot.errors import ChatbotError
from chatbot.evaluation import calibration_lines
from chatbot.kb import KnowledgeBase, Report, Upload, chunks_label
from chatbot.runtime import IndexWatcher
from chatbot.privacy import mask_address
from chatbot.staff import PERMISSIONS, ROLES, Accounts, allowed, check_role, hash_password
from chatbot.store import Store
from chatbot.web.chat_ui import CHAT_PAGE, as_text

log = logging.getLogger(__name__)


def requires(permission: str):
    """Marks an admin action with the permission it checks (`need`); a test holds every action to
    the role table."""
    assert permission in PERMISSIONS

    def mark(fn):
        fn.permission = permission
        return fn

    return mark


class Staff:
    """Who is asking, from a Gradio request: their role, and the audit row of what they did."""

    def __init__(self, accounts: Accounts, store: Store) -> None:
        self.accounts, self.store = accounts, store

    def need(self, request: gr.Request | None, permission: str) -> str:
        """The signed-in user's name if their role has `permission`, else a `gr.Error`."""
        name = getattr(request, "username", None) if request is not None else None
        role = self.accounts.role(name)
        if not allowed(role, permission):
            raise gr.Error(f"Your role ({role or 'not signed in'}) may not do this: it needs {PERMISSIONS[permission]} or above. Ask an owner.")
        return str(name)

    def audit(self, request: gr.Request | None, action: str, target: str = "", detail: dict | None = None) -> None:
        client = getattr(request, "client", None)
        address = mask_address(getattr(client, "host", "") or "")
        self.store.audit(getattr(request, "username", None) or "?", action, target, address, detail)
COLUMNS = ["id", "name", "type", "chunks", "size", "added", "status"]


def document_rows(kb: KnowledgeBase) -> tuple[list[list], str]:
    """The table rows (documents, then files the knowledge folder could not give) and a summary,
    from the live version's manifest (FAISS and BM25 are not loaded for this)."""
    manifest = kb.versions.manifest() or {}
    docs = manifest.get("documents", [])
    rows = [[d["id"], d["name"], d["type"], d["chunks"], _size(d["size"]), d["added"][:16].replace("T", " "), f"indexed ({d['origin']})"] for d in docs]
    rows += [["", error.split(": ", 1)[0], "", 0, "", "", "refused: " + error.split(": ", 1)[-1]] for error in manifest.get("refused", [])]
    summary = (
        f"**Index version** `{manifest.get('version')}` · {len(docs)} documents · {manifest.get('chunks', 0)} chunks · "
        f"embedder `{manifest.get('embedder')}` · made {manifest.get('created')}"
    )
    calibration = "\n".join(f"- {line}" for line in calibration_lines(manifest.get("calibration")))
    return rows, f"{summary}\n\n**When to answer** (calibrated on this knowledge):\n{calibration}"


def report_markdown(report: Report) -> str:
    """What an upload, removal or rebuild did, for the admin to read."""
    lines = []
    for label, docs in (("Added", report.added), ("Replaced", report.replaced), ("Removed", report.removed)):
        lines += [f"- **{label}** {as_text(d['name'])} ({chunks_label(d['chunks'])})" for d in docs]
    lines += [f"- **Unchanged** {as_text(name)}: already in the knowledge base" for name in report.unchanged]
    lines += [f"- **Refused** {as_text(error)}" for error in report.refused]
    if report.changed:
        lines.append(f"\nIndex version `{report.version}` is live ({chunks_label(report.embedded_chunks)} embedded in {report.seconds:.1f} s).")
    else:  # every file refused or already there: no new version was made
        lines.append(f"\nNothing changed: index version `{report.version}` is still live."
                     + (" Mend the refused files as each line says and add them again." if report.refused else ""))
    return "\n".join(lines)


def build_admin_ui(kb: KnowledgeBase, watcher: IndexWatcher, store: Store, accounts: Accounts) -> gr.Blocks:
    """The admin page for `kb` and `store`; `watcher` moves the chat onto each new version at once;
    `accounts` say who may do what."""
    staff = Staff(accounts, store)

    def choices(rows: list[list]) -> gr.Dropdown:
        return gr.Dropdown(choices=[(f"{r[1]} · {r[0]}", r[0]) for r in rows if r[0]], value=None)

    @requires("read")
    def refresh(request: gr.Request):
        staff.need(request, "read")
        rows, summary = document_rows(kb)
        return rows, summary, choices(rows)

    def after(report: Report, request: gr.Request, action: str):
        watcher.refresh()
        names = [d["name"] for d in report.added + report.replaced + report.removed]
        if names or action == "kb-rebuild":
            staff.audit(request, action, ", ".join(names)[:300], {"version": report.version})
        return report_markdown(report), *refresh(request)

    @requires("knowledge")
    def upload(files: list[str] | None, request: gr.Request, progress=gr.Progress()):  # noqa: B008
        staff.need(request, "knowledge")
        if not files:
            raise gr.Error("Choose one or more files first.")
        uploads = [Upload(Path(f).name, Path(f).read_bytes()) for f in files]
        progress(0, desc=f"{len(uploads)} file(s) received")
        try:
            report = kb.add(uploads, progress=lambda fraction, text: progress(fraction, desc=text))
        except ChatbotError as e:
            raise gr.Error(str(e)) from e
        return None, *after(report, request, "kb-add")

    @requires("knowledge")
    def try_upload(files: list[str] | None, request: gr.Request, progress=gr.Progress()):  # noqa: B008
        """The files tried on a version that is not made live, and the stored questions of the
        last 30 days and the labelled sets replayed on it (`chatbot/replay.py`)."""
        from chatbot.replay import EVALSETS, labelled_questions, markdown, replay, stored_questions

        staff.need(request, "knowledge")
        if not files:
            raise gr.Error("Choose one or more files first.")
        uploads = [Upload(Path(f).name, Path(f).read_bytes()) for f in files]
        try:
            report = kb.try_change(uploads, progress=lambda fraction, text: progress(0.8 * fraction, desc=text))
        except ChatbotError as e:
            raise gr.Error(str(e)) from e
        refused = [f"- **Refused** {as_text(error)}" for error in report.refused]
        if report.index is None:
            return "\n".join(["Nothing would change.", *refused])
        progress(0.85, desc="replaying the stored questions and the labelled sets")
        result = replay(watcher.manager, report.index, stored_questions(store) + labelled_questions(kb.settings.data_dir / EVALSETS))
        lines = markdown(result, as_text)
        lines[1:1] = refused
        lines.append("Publish with “Add to the knowledge base”, or choose other files.")
        return "\n".join(lines)

    @requires("knowledge")
    def remove(doc_id: str | None, request: gr.Request):
        staff.need(request, "knowledge")
        if not doc_id:
            raise gr.Error("Choose the document to remove first.")
        try:
            return after(kb.remove(doc_id), request, "kb-remove")
        except ChatbotError as e:
            raise gr.Error(str(e)) from e

    @requires("knowledge")
    def rebuild(request: gr.Request, progress=gr.Progress()):  # noqa: B008
        staff.need(request, "knowledge")
        try:
            return after(kb.rebuild(progress=lambda fraction, text: progress(fraction, desc=text)), request, "kb-rebuild")
        except ChatbotError as e:
            raise gr.Error(str(e)) from e

    with gr.Blocks(title="Kefu · admin") as ui:
        with gr.Row():
            gr.Markdown("## Kefu admin / 管理")
            who = gr.Markdown()
            gr.Button("Sign out", link="/admin/logout", size="sm", scale=0)
        with gr.Tab("Knowledge base · 知识库"):
            summary = gr.Markdown()
            table = gr.Dataframe(headers=COLUMNS, label="Documents", interactive=False, wrap=True)
            with gr.Row(visible=False) as changes:
                with gr.Column(scale=3):
                    files = gr.File(
                        label="Upload documents: PDF, DOCX, Markdown, HTML, TXT, CSV, XLSX, JSON (a file with the name of a document replaces it)",
                        file_count="multiple",
                    )
                    with gr.Row():
                        add = gr.Button("Add to the knowledge base", variant="primary")
                        trial = gr.Button("Try first: replay the questions, nothing goes live")
                with gr.Column(scale=2):
                    chosen = gr.Dropdown(label="Document", choices=[])
                    delete = gr.Button("Remove document", variant="stop")
                    rebuild_button = gr.Button("Re-embed everything", size="sm")
            result = gr.Markdown()
        outputs = [result, table, summary, chosen]
        add.click(upload, inputs=files, outputs=[files, *outputs], concurrency_id="kb", concurrency_limit=1)
        trial.click(try_upload, inputs=files, outputs=result, concurrency_id="kb", concurrency_limit=1)
        delete.click(remove, inputs=chosen, outputs=outputs, concurrency_id="kb", concurrency_limit=1)
        rebuild_button.click(rebuild, outputs=outputs, concurrency_id="kb", concurrency_limit=1)
        ui.load(refresh, outputs=[table, summary, chosen])
        shown = {"knowledge": [changes]}
        for permission, parts in build_gaps_tab(staff, ui, watcher).items():
            shown.setdefault(permission, []).extend(parts)
        for build in (build_conversations_tab, build_site_keys_tab, build_staff_tab, build_audit_tab):
            for permission, parts in build(staff, ui).items():
                shown.setdefault(permission, []).extend(parts)
        order = [(p, c) for p, parts in shown.items() for c in parts]

        def visibility(request: gr.Request):
            """Each role sees only what it may do (the server checks again on every action)."""
            name = getattr(request, "username", None)
            role = accounts.role(name)
            return [f"Signed in as **{as_text(str(name))}** ({role})", *(gr.update(visible=allowed(role, p)) for p, _ in order)]

        ui.load(visibility, outputs=[who, *(c for _, c in order)])
    return ui


def _size(n: int) -> str:
    if n >= 2**20:
        return f"{n / 2**20:.1f} MB"
    return f"{n / 1024:.1f} KB" if n >= 1024 else f"{n} B"


CONVERSATION_COLUMNS = ["id", "status", "updated", "messages", "first question", "site key"]
MESSAGE_COLUMNS = ["time", "who", "text", "mode", "sources"]
FILTERS = {"All": "all", "Handed off (inbox)": "handoff", "Abstained": "abstained", "Thumbs down": "thumbs_down"}


def build_conversations_tab(staff: Staff, ui: gr.Blocks) -> dict[str, list]:
    """The inbox, one conversation with a reply box, its export and erasure, and the daily counts."""
    store = staff.store

    @requires("read")
    def listing(filter_name: str, request: gr.Request):
        staff.need(request, "read")
        rows = store.list_conversations(FILTERS.get(filter_name, "all"))
        table = [[r["id"], r["status"], r["updated"].strftime("%Y-%m-%d %H:%M:%S"), r["messages"], r["first"][:120], r["site_key"]] for r in rows]
        return table, gr.Dropdown(choices=[(f"{r['first'][:50] or '(no question yet)'} · {r['status']} · {r['id'][:8]}", r["id"]) for r in rows])

    @requires("read")
    def show(conversation_id: str | None, request: gr.Request):
        staff.need(request, "read")
        if not conversation_id:
            return [], ""
        conversation = store.conversation(conversation_id)
        if conversation is None:
            raise gr.Error("That conversation no longer exists.")
        staff.audit(request, "view", f"conversation {conversation_id}")
        rows = [
            [m.created.strftime("%H:%M:%S"), m.role, m.content, m.mode or "", ", ".join(s.get("source", "") for s in (m.sources or []))]
            for m in store.messages(conversation_id)
        ]
        note = "**Handed off**: the bot is quiet; your reply goes to the customer." if conversation.status == "handoff" else "The bot is answering this conversation."
        return rows, note

    @requires("reply")
    def reply(conversation_id: str | None, text: str, request: gr.Request):
        staff.need(request, "reply")
        if not conversation_id:
            raise gr.Error("Choose a conversation first.")
        if not text.strip():
            raise gr.Error("Write a reply first.")
        conversation = store.conversation(conversation_id)
        if conversation is not None and conversation.status != "handoff":
            store.set_status(conversation_id, "handoff")  # a person answering takes the conversation over
        store.add_message(conversation_id, "agent", text.strip()[:4000])
        staff.audit(request, "reply", f"conversation {conversation_id}")
        return "", *show(conversation_id, request)

    @requires("reply")
    def hand_back(conversation_id: str | None, request: gr.Request):
        staff.need(request, "reply")
        if not conversation_id:
            raise gr.Error("Choose a conversation first.")
        store.set_status(conversation_id, "bot")
        staff.audit(request, "hand-back", f"conversation {conversation_id}")
        return show(conversation_id, request)

    def chosen(conversation_id: str | None, whole_visitor: bool) -> dict:
        """What an export or erasure covers: the conversation, or every conversation of its visitor
        on its site key (not on the chat page, whose conversations share one visitor name)."""
        if not conversation_id:
            raise gr.Error("Choose a conversation first.")
        conversation = store.conversation(conversation_id)
        if conversation is None:
            raise gr.Error("That conversation no longer exists.")
        if not whole_visitor:
            return {"conversation_id": conversation_id}
        if conversation.site_key == CHAT_PAGE:
            raise gr.Error("Chat-page conversations have no visitor of their own: export or erase them one by one.")
        return {"site_key": conversation.site_key, "visitor": conversation.visitor}

    def scope(which: dict) -> str:
        return f"conversation {which['conversation_id']}" if "conversation_id" in which else f"visitor {which['visitor']} of {which['site_key']}"

    @requires("customer_data")
    def export(conversation_id: str | None, whole_visitor: bool, request: gr.Request):
        staff.need(request, "customer_data")
        which = chosen(conversation_id, whole_visitor)
        data = store.export(**which)
        staff.audit(request, "export", scope(which), {"conversations": len(data["conversations"])})
        import json
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="kefu-export-"))
        path = folder / (f"visitor-{which['visitor'][:12]}.json" if "visitor" in which else f"conversation-{conversation_id[:8]}.json")
        path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
        return str(path)

    @requires("customer_data")
    def erase(conversation_id: str | None, whole_visitor: bool, confirmed: bool, filter_name: str, request: gr.Request):
        staff.need(request, "customer_data")
        which = chosen(conversation_id, whole_visitor)
        if not confirmed:
            raise gr.Error("Tick “I am sure” first: erasing cannot be undone.")
        counts = store.erase(**which, actor=getattr(request, "username", None) or "?", address=mask_address(getattr(getattr(request, "client", None), "host", "") or ""))
        note = f"Erased {scope(which)}: {counts['conversations']} conversations, {counts['messages']} messages and {counts['feedback']} feedback deleted."
        return note, False, [], *listing(filter_name, request)

    @requires("read")
    def counts(request: gr.Request):
        staff.need(request, "read")
        import pandas as pd

        rows = store.daily_counts()
        long = [{"day": r["day"], "count": r[k], "what": k} for r in rows for k in ("conversations", "answered", "abstained", "handed off")]
        return pd.DataFrame(long or [{"day": "", "count": 0, "what": "conversations"}])

    with gr.Tab("Conversations · 对话"):
        with gr.Row():
            which = gr.Dropdown(label="Show", choices=list(FILTERS), value="Handed off (inbox)", scale=2)
            reload = gr.Button("Refresh", size="sm", scale=1)
        conversations = gr.Dataframe(headers=CONVERSATION_COLUMNS, label="Conversations", interactive=False, wrap=True, max_height=300)
        picked = gr.Dropdown(label="Conversation", choices=[])
        status = gr.Markdown()
        messages = gr.Dataframe(headers=MESSAGE_COLUMNS, label="Messages", interactive=False, wrap=True)
        with gr.Row(visible=False) as replying:
            answer = gr.Textbox(label="Reply to the customer", lines=2, scale=4)
            send = gr.Button("Send reply", variant="primary", scale=1)
            back = gr.Button("Hand back to the bot", scale=1)
        with gr.Row(visible=False) as data_row:
            download = gr.Button("Export this conversation (JSON)", size="sm")
            exported = gr.File(label="Export", interactive=False)
            whole = gr.Checkbox(label="Every conversation of this visitor", value=False)
            sure = gr.Checkbox(label="I am sure", value=False)
            wipe = gr.Button("Erase this conversation", variant="stop", size="sm")
        erased = gr.Markdown()
        plot = gr.BarPlot(x="day", y="count", color="what", label="Per day: conversations, answered, abstained, handed off")
        which.change(listing, inputs=which, outputs=[conversations, picked])
        reload.click(listing, inputs=which, outputs=[conversations, picked]).then(counts, outputs=plot)
        picked.change(show, inputs=picked, outputs=[messages, status])
        send.click(reply, inputs=[picked, answer], outputs=[answer, messages, status])
        back.click(hand_back, inputs=picked, outputs=[messages, status])
        download.click(export, inputs=[picked, whole], outputs=exported)
        wipe.click(erase, inputs=[picked, whole, sure, which], outputs=[erased, sure, messages, conversations, picked])
        ui.load(listing, inputs=which, outputs=[conversations, picked]).then(counts, outputs=plot)
    return {"reply": [replying], "customer_data": [data_row]}


GAP_COLUMNS = ["Topic", "Language", "Telling words", "Questions", "Near misses", "Off topic", "Thumbs-down", "Handed off", "Asked again", "Score", "First seen", "Last seen"]
SIGNAL_NAMES = {"near_miss_abstain": "refused, passages near", "off_topic_abstain": "refused, nothing near", "thumbs_down": "thumbs-down",
                "handoff": "handed to a person", "repeat": "asked again"}


DRAFT_COLUMNS = ["Draft", "Topic", "Status", "Question", "Answer", "From", "Reviewer", "Reason"]


def build_gaps_tab(staff: Staff, ui: gr.Blocks, watcher: IndexWatcher) -> dict[str, list]:
    """What customers asked that the knowledge could not answer, grouped into topics and ranked
    (`chatbot/gaps.py`), each topic's questions with why each is a gap and the person's reply
    where one was handed off; a draft FAQ entry for a topic, reviewed (approved, edited or
    dismissed with a reason) and published as one knowledge document."""
    from chatbot.gaps import APPROVED_DOCUMENT, approve, dismiss, gap_topics, edited_question, try_approval, write_draft

    store = staff.store

    @requires("read")
    def find(days: float, request: gr.Request, progress=gr.Progress()):  # noqa: B008
        staff.need(request, "read")
        progress(0, desc="Scoring the gap questions on the live knowledge")
        manager = watcher.manager
        found, gaps = gap_topics(store, manager.retriever, manager.thresholds(), days=int(days or 30))
        alone = len(gaps) - sum(len(t.gaps) for t in found)
        summary = (f"**{len(gaps)}** questions in the last {int(days or 30)} days were refused, thumbed down, handed to a person or asked "
                   f"again: **{len(found)}** topics of five or more, and {alone} in no topic. Ranked by count × recency × handoffs.")
        rows = [[t.id, t.lang, " · ".join(t.label), len(t.gaps), *(t.signals.get(k, 0) for k in SIGNAL_NAMES), round(t.score, 1),
                 t.first_seen.strftime("%Y-%m-%d"), t.last_seen.strftime("%Y-%m-%d")] for t in found]
        kept = {t.id: t for t in found}
        return summary, rows, gr.Dropdown(choices=[(f"#{t.id} · {' · '.join(t.label)}", t.id) for t in found], value=None), kept, ""

    @requires("read")
    def metrics(days: float, request: gr.Request):
        staff.need(request, "read")
        import pandas as pd

        m = store.resolution_metrics(int(days or 30))
        per_topic = store.topic_metrics(int(days or 30))["topics"]
        names = {"resolution_rate": "resolved", "containment": "contained", "handoff_rate": "handed off", "abstain_rate": "abstained", "thumbs_down_rate": "thumbs-down"}
        long = [{"day": r["day"], "rate": r[k], "what": name} for r in m["days"] for k, name in names.items() if r[k] is not None]
        topics = [{"day": r["day"], "rate": r["resolution_rate"], "topic": f"#{t['topic']}"} for t in per_topic for r in t["days"]]
        t = m["total"]

        def pct(x) -> str:
            return "–" if x is None else f"{x:.0%}"

        def closing(row) -> str:
            if row["days_to_close"] is not None:
                return f"#{row['topic']} closed in {row['days_to_close']} days"
            return f"#{row['topic']} approved, not answered since yet"

        closed = "; ".join(closing(r) for r in per_topic if r["approved"]) or "none yet"
        note = (f"Over {t['conversations']} conversations: **{pct(t['resolution_rate'])} resolved** (answered, with no handoff, thumbs-down or "
                f"question asked again), {pct(t['containment'])} contained, {pct(t['handoff_rate'])} handed off; of {t['answers']} answers "
                f"{pct(t['abstain_rate'])} refused and {pct(t['thumbs_down_rate'])} thumbed down. Gaps closed (from a topic's first question "
                f"to the first of its questions resolved after its draft was approved): {closed}.")
        return (note, pd.DataFrame(long or [{"day": "", "rate": 0.0, "what": "resolved"}]),
                pd.DataFrame(topics or [{"day": "", "rate": 0.0, "topic": ""}]))

    @requires("read")
    def detail(topic_id: int | None, kept: dict, request: gr.Request) -> str:
        staff.need(request, "read")
        if not isinstance(kept, dict) or topic_id not in kept:
            return ""
        lines = []
        for g in kept[topic_id].gaps:
            question, signals = g.question, g.signals
            why = ", ".join(SIGNAL_NAMES[k] for k in signals)
            score = f"; about this knowledge {g.topic:.2f}, answered from {g.threshold:.2f}" if g.topic is not None and g.threshold is not None else ""
            lines.append(f"- {as_text(question)} ({why}{score})")
            if signals.get("thumbs_down"):
                lines.append(f"  - the customer's reason: {as_text(signals['thumbs_down'])}")
            if signals.get("handoff"):
                lines.append(f"  - the person replied: {as_text(signals['handoff'])}")
        return "\n".join(lines)

    @requires("read")
    def drafts_table(request: gr.Request):
        staff.need(request, "read")
        def origin(d) -> str:
            if d.cites:
                made = "the person's replies"
            elif d.needs_source:
                made = "the entry's answer: needs a source" if d.near_entry else "the LM: needs a source"
            else:
                made = ""
            return f"{made}; edits an existing entry" if d.near_entry else made

        return [[d.id, d.topic_id, d.status, d.question, d.answer, origin(d), d.reviewer, d.reason] for d in store.gap_drafts()]

    @requires("knowledge")
    def make_draft(topic_id: int | None, kept: dict, request: gr.Request):
        name = staff.need(request, "knowledge")
        if not isinstance(kept, dict) or topic_id not in kept:
            raise gr.Error("Find the gap topics and choose one first.")
        manager = watcher.manager
        draft = store.add_gap_draft(**write_draft(kept[topic_id], manager, manager.masker))
        staff.audit(request, "gap-draft", f"draft {draft.id} for topic {topic_id}")
        notes = [f"Draft **{draft.id}** for topic {topic_id}, by {as_text(name)}: edit it, then approve or dismiss it."]
        if draft.cites:
            notes.append(f"Written from the person's replies in conversations {', '.join(draft.cites)}.")
        if draft.needs_source:
            notes.append("**Needs a source**: " + ("written by the LM from the nearest passages, which did not answer these questions; check it." if draft.answer
                                                   else "the knowledge does not say it: write the answer."))
        if draft.near_entry:
            notes.append(f"**Edits the FAQ entry** “{as_text(edited_question(draft))}”: once approved, this answer replaces that entry's "
                         "(removing the approved drafts' document brings the entry back).")
        return draft.id, draft.question, draft.answer, " ".join(notes), drafts_table(request)

    @requires("knowledge")
    def try_draft(draft_id: int | None, question: str, answer: str, request: gr.Request):
        from chatbot.replay import EVALSETS, labelled_questions, markdown, replay, stored_questions

        staff.need(request, "knowledge")
        if not draft_id:
            raise gr.Error("Write a draft first.")
        try:
            report = try_approval(store, watcher.kb, watcher.manager.masker, int(draft_id), question, answer)
        except ChatbotError as e:
            raise gr.Error(str(e)) from e
        if report.index is None:
            return "Nothing would change."
        result = replay(watcher.manager, report.index, stored_questions(store) + labelled_questions(watcher.kb.settings.data_dir / EVALSETS))
        return "\n".join(markdown(result, as_text))

    @requires("knowledge")
    def approve_draft(draft_id: int | None, question: str, answer: str, request: gr.Request):
        name = staff.need(request, "knowledge")
        if not draft_id:
            raise gr.Error("Write a draft first.")
        try:
            report = approve(store, watcher.kb, watcher.manager.masker, int(draft_id), name, question, answer)
        except ChatbotError as e:
            raise gr.Error(str(e)) from e
        watcher.refresh()
        staff.audit(request, "gap-approve", f"draft {draft_id}", {"version": report.version if report else ""})
        return f"Approved draft {draft_id}: {APPROVED_DOCUMENT} is live in index {report.version if report else '(unchanged)'}; the chat answers it now.", drafts_table(request)

    @requires("knowledge")
    def dismiss_draft(draft_id: int | None, reason: str, request: gr.Request):
        name = staff.need(request, "knowledge")
        if not draft_id:
            raise gr.Error("Write a draft first.")
        try:
            dismiss(store, watcher.kb, int(draft_id), name, reason or "")
        except ChatbotError as e:
            raise gr.Error(str(e)) from e
        watcher.refresh()
        staff.audit(request, "gap-dismiss", f"draft {draft_id}")
        return f"Dismissed draft {draft_id}.", drafts_table(request)

    with gr.Tab("Gaps · 知识缺口"):
        gr.Markdown("What customers asked that the knowledge could not answer, grouped into topics. An FAQ entry for a topic "
                    "(the person's replies are a start) closes it: add it on the Knowledge base tab.")
        with gr.Row():
            days = gr.Number(label="Days", value=30, minimum=1, maximum=365, precision=0, scale=0)
            run = gr.Button("Find gap topics", variant="primary", scale=0)
        summary = gr.Markdown()
        table = gr.Dataframe(headers=GAP_COLUMNS, label="Gap topics, best ranked first", interactive=False, wrap=True)
        topic = gr.Dropdown(label="Topic", choices=[])
        questions = gr.Markdown()
        kept = gr.State({})
        with gr.Column(visible=False) as reviewing:
            write = gr.Button("Draft an FAQ entry for this topic", scale=0)
            note = gr.Markdown()
            with gr.Row():
                draft_id = gr.Number(label="Draft", precision=0, interactive=False, scale=0)
                question = gr.Textbox(label="Question", scale=2)
                answer = gr.Textbox(label="Answer", lines=3, scale=3)
            with gr.Row():
                attempt = gr.Button("Try first", scale=0)
                accept = gr.Button("Approve and publish", variant="primary", scale=0)
                reason = gr.Textbox(label="Reason (to dismiss)", scale=2)
                drop = gr.Button("Dismiss", variant="stop", scale=0)
            result = gr.Markdown()
        drafts = gr.Dataframe(headers=DRAFT_COLUMNS, label="Drafts and their review", interactive=False, wrap=True)
        rates_note = gr.Markdown()
        rates = gr.LinePlot(x="day", y="rate", color="what", label="Per day: resolved, contained, handed off (of conversations); abstained, thumbs-down (of answers)", y_lim=[0, 1])
        topic_rates = gr.LinePlot(x="day", y="rate", color="topic", label="Per gap topic and day: the share of its questions resolved", y_lim=[0, 1])
        run.click(find, inputs=days, outputs=[summary, table, topic, kept, questions], concurrency_id="gaps", concurrency_limit=1).then(drafts_table, outputs=drafts).then(metrics, inputs=days, outputs=[rates_note, rates, topic_rates])
        topic.change(detail, inputs=[topic, kept], outputs=questions)
        write.click(make_draft, inputs=[topic, kept], outputs=[draft_id, question, answer, note, drafts], concurrency_id="gaps", concurrency_limit=1)
        attempt.click(try_draft, inputs=[draft_id, question, answer], outputs=result, concurrency_id="kb", concurrency_limit=1)
        accept.click(approve_draft, inputs=[draft_id, question, answer], outputs=[result, drafts], concurrency_id="kb", concurrency_limit=1)
        drop.click(dismiss_draft, inputs=[draft_id, reason], outputs=[result, drafts], concurrency_id="kb", concurrency_limit=1)
    return {"knowledge": [reviewing]}


def build_site_keys_tab(staff: Staff, ui: gr.Blocks) -> dict[str, list]:
    """Site keys and their allowed origins: what a website's widget tag carries."""
    store = staff.store

    @requires("site_keys")
    def keys(request: gr.Request):
        if not allowed(staff.accounts.role(getattr(request, "username", None)), "site_keys"):
            return [], gr.Dropdown(choices=[], value=None)  # the tab is hidden for this role
        sites = store.site_keys()
        return [[s.key, s.name, " ".join(s.origins), s.created.strftime("%Y-%m-%d")] for s in sites], gr.Dropdown(choices=[(f"{s.name} · {s.key}", s.key) for s in sites], value=None)

    @requires("site_keys")
    def create(name: str, origins: str, request: gr.Request):
        staff.need(request, "site_keys")
        try:
            site = store.create_site_key(name.strip() or "website", origins.split())
        except ChatbotError as e:
            raise gr.Error(str(e)) from e
        staff.audit(request, "sitekey-add", f"{site.key} ({site.name})", {"origins": site.origins})
        snippet = f'<script src="https://YOUR-KEFU-HOST/widget.js" data-site-key="{site.key}" async></script>'
        return f"Created `{site.key}` for {as_text(', '.join(site.origins))}. Paste into the website:\n\n```html\n{snippet}\n```", *keys(request)

    @requires("site_keys")
    def delete(key: str | None, request: gr.Request):
        staff.need(request, "site_keys")
        if not key:
            raise gr.Error("Choose a site key first.")
        store.delete_site_key(key)
        staff.audit(request, "sitekey-remove", key)
        return f"Deleted `{key}`: widgets using it stop working.", *keys(request)

    with gr.Tab("Site keys · 网站密钥", visible=False) as tab:
        table = gr.Dataframe(headers=["key", "name", "allowed origins", "created"], label="Site keys", interactive=False)
        with gr.Row():
            name = gr.Textbox(label="Website name")
            origins = gr.Textbox(label="Allowed origins, space-separated (https://shop.example.com)")
            make = gr.Button("Create site key", variant="primary")
        with gr.Row():
            chosen = gr.Dropdown(label="Site key", choices=[])
            drop = gr.Button("Delete site key", variant="stop")
        note = gr.Markdown()
        make.click(create, inputs=[name, origins], outputs=[note, table, chosen])
        drop.click(delete, inputs=chosen, outputs=[note, table, chosen])
        ui.load(keys, outputs=[table, chosen])
    return {"site_keys": [tab]}


def build_staff_tab(staff: Staff, ui: gr.Blocks) -> dict[str, list]:
    """Staff users and their roles; owners only."""
    store = staff.store

    @requires("users")
    def names(request: gr.Request):
        if not allowed(staff.accounts.role(getattr(request, "username", None)), "users"):
            return [], gr.Dropdown(choices=[], value=None)  # the tab is hidden for this role
        users = store.users()
        return [[u.name, u.role, u.created.strftime("%Y-%m-%d")] for u in users], gr.Dropdown(choices=[u.name for u in users], value=None)

    @requires("users")
    def add(name: str, role: str, password: str, request: gr.Request):
        staff.need(request, "users")
        name = name.strip()
        if not name:
            raise gr.Error("Write the new user's name first.")
        try:
            store.add_user(name, check_role(role), hash_password(password))
        except ChatbotError as e:
            raise gr.Error(str(e)) from e
        staff.audit(request, "user-add", name, {"role": role})
        return f"Added {as_text(name)} as {role}.", "", "", *names(request)

    @requires("users")
    def change(name: str | None, role: str, request: gr.Request):
        staff.need(request, "users")
        if not name:
            raise gr.Error("Choose a user first.")
        try:
            store.update_user(name, role=check_role(role))
        except ChatbotError as e:
            raise gr.Error(str(e)) from e
        staff.audit(request, "user-role", name, {"role": role})
        return f"{as_text(name)} is now {role}.", *names(request)

    @requires("users")
    def drop(name: str | None, request: gr.Request):
        staff.need(request, "users")
        if not name:
            raise gr.Error("Choose a user first.")
        if name == getattr(request, "username", None):
            raise gr.Error("You cannot remove yourself; another owner can.")
        store.remove_user(name)
        staff.audit(request, "user-remove", name)
        return f"Removed {as_text(name)}.", *names(request)

    with gr.Tab("Staff · 员工", visible=False) as tab:
        table = gr.Dataframe(headers=["name", "role", "created"], label="Staff users", interactive=False)
        gr.Markdown("Roles: **viewer** reads · **agent** also answers handed-off customers · **admin** also manages knowledge, site keys and customers' data, and reads the audit log · **owner** also manages staff.")
        with gr.Row():
            new_name = gr.Textbox(label="Name")
            new_role = gr.Dropdown(label="Role", choices=list(ROLES), value="agent")
            new_password = gr.Textbox(label="Password (at least 12 characters)", type="password")
            make = gr.Button("Add user", variant="primary")
        with gr.Row():
            chosen = gr.Dropdown(label="User", choices=[])
            role = gr.Dropdown(label="New role", choices=list(ROLES), value="viewer")
            set_role = gr.Button("Change role")
            remove = gr.Button("Remove user", variant="stop")
        note = gr.Markdown()
        make.click(add, inputs=[new_name, new_role, new_password], outputs=[note, new_name, new_password, table, chosen])
        set_role.click(change, inputs=[chosen, role], outputs=[note, table, chosen])
        remove.click(drop, inputs=chosen, outputs=[note, table, chosen])
        ui.load(names, outputs=[table, chosen])
    return {"users": [tab]}


AUDIT_COLUMNS = ["id", "time (UTC)", "who", "action", "target", "address", "detail"]
AUDIT_ACTIONS = ["(all)", "sign-in", "sign-in-failed", "sign-in-refused", "view", "reply", "hand-back", "export", "erase", "purge", "kb-add", "kb-remove", "kb-rebuild", "kb-sync", "gap-draft", "gap-approve", "gap-dismiss", "sitekey-add", "sitekey-remove", "user-add", "user-role", "user-password", "user-remove"]


def build_audit_tab(staff: Staff, ui: gr.Blocks) -> dict[str, list]:
    """The audit log, newest first, filtered by action or user, and a check of its chain."""
    store = staff.store

    @requires("audit")
    def rows(action: str, actor: str, request: gr.Request):
        if not allowed(staff.accounts.role(getattr(request, "username", None)), "audit"):
            return []  # the tab is hidden for this role
        import json

        entries = store.audit_log(500, action="" if action in (None, "(all)") else action, actor=(actor or "").strip())
        return [[e.id, e.at.strftime("%Y-%m-%d %H:%M:%S"), e.actor, e.action, e.target, e.address, json.dumps(e.detail, ensure_ascii=False)] for e in entries]

    @requires("audit")
    def verify(request: gr.Request):
        staff.need(request, "audit")
        checked, bad = store.verify_audit()
        if bad is None:
            return f"The chain holds: {checked} rows, each chained to the one before."
        return f"**The audit log was altered**: {'rows were deleted from its end' if bad == -1 else f'row {bad} was edited, or a row before it deleted'}."

    with gr.Tab("Audit log · 审计日志", visible=False) as tab:
        with gr.Row():
            action = gr.Dropdown(label="Action", choices=AUDIT_ACTIONS, value="(all)")
            actor = gr.Textbox(label="Who (exact name)")
            reload = gr.Button("Refresh", size="sm")
            check = gr.Button("Verify the chain", size="sm")
        checked = gr.Markdown()
        table = gr.Dataframe(headers=AUDIT_COLUMNS, label="Audit log (newest first)", interactive=False, wrap=True, max_height=500)
        for trigger in (action.change, actor.submit, reload.click):
            trigger(rows, inputs=[action, actor], outputs=table)
        check.click(verify, outputs=checked)
        ui.load(rows, inputs=[action, actor], outputs=table)
    return {"audit": [tab]}
