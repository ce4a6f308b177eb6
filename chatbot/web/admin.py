"""The admin page (Gradio, at `/admin` behind the admin password), in three tabs:

- Knowledge base: the documents, uploads of several files at once with progress, replace (upload a
  file of the same name) and remove, rebuild, and the live index version. Every change goes
  through `KnowledgeBase`; the chat answers from the new version as soon as it is live.
- Conversations: the inbox (filter: handed off, abstained, thumbs down), one conversation's
  messages, a reply to a handed-off customer, "hand back to the bot", and daily counts.
- Site keys: the keys websites embed the widget with, each with its allowed origins.

Everything a customer, the bot or an admin wrote is shown as plain text (table cells), never as HTML."""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr

from chatbot.errors import ChatbotError
from chatbot.evaluation import calibration_lines
from chatbot.index import live_manifest
from chatbot.kb import KnowledgeBase, Report, Upload, chunks_label
from chatbot.runtime import IndexWatcher
from chatbot.store import Store
from chatbot.web.chat_ui import as_text

log = logging.getLogger(__name__)
COLUMNS = ["id", "name", "type", "chunks", "size", "added", "status"]


def document_rows(kb: KnowledgeBase) -> tuple[list[list], str]:
    """The table rows (documents, then files the knowledge folder could not give) and a summary,
    from the live version's manifest (FAISS and BM25 are not loaded for this)."""
    manifest = live_manifest(kb.index_dir) or {}
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
    lines.append(f"\nIndex version `{report.version}` is live ({chunks_label(report.embedded_chunks)} embedded in {report.seconds:.1f} s).")
    return "\n".join(lines)


def build_admin_ui(kb: KnowledgeBase, watcher: IndexWatcher, store: Store) -> gr.Blocks:
    """The admin page for `kb` and `store`; `watcher` moves the chat onto each new version at once."""

    def choices(rows: list[list]) -> gr.Dropdown:
        return gr.Dropdown(choices=[(f"{r[1]} · {r[0]}", r[0]) for r in rows if r[0]], value=None)

    def refresh():
        rows, summary = document_rows(kb)
        return rows, summary, choices(rows)

    def after(report: Report):
        watcher.refresh()
        return report_markdown(report), *refresh()

    def upload(files: list[str] | None, progress=gr.Progress()):  # noqa: B008
        if not files:
            raise gr.Error("Choose one or more files first.")
        uploads = [Upload(Path(f).name, Path(f).read_bytes()) for f in files]
        progress(0, desc=f"{len(uploads)} file(s) received")
        try:
            report = kb.add(uploads, progress=lambda fraction, text: progress(fraction, desc=text))
        except ChatbotError as e:
            raise gr.Error(str(e)) from e
        return None, *after(report)

    def remove(doc_id: str | None):
        if not doc_id:
            raise gr.Error("Choose the document to remove first.")
        try:
            return after(kb.remove(doc_id))
        except ChatbotError as e:
            raise gr.Error(str(e)) from e

    def rebuild(progress=gr.Progress()):  # noqa: B008
        try:
            return after(kb.rebuild(progress=lambda fraction, text: progress(fraction, desc=text)))
        except ChatbotError as e:
            raise gr.Error(str(e)) from e

    with gr.Blocks(title="Kefu · admin") as ui:
        gr.Markdown("## Kefu admin / 管理")
        with gr.Tab("Knowledge base · 知识库"):
            summary = gr.Markdown()
            table = gr.Dataframe(headers=COLUMNS, label="Documents", interactive=False, wrap=True)
            with gr.Row():
                with gr.Column(scale=3):
                    files = gr.File(
                        label="Upload documents: PDF, DOCX, Markdown, HTML, TXT, CSV, XLSX, JSON (a file with the name of a document replaces it)",
                        file_count="multiple",
                    )
                    add = gr.Button("Add to the knowledge base", variant="primary")
                with gr.Column(scale=2):
                    chosen = gr.Dropdown(label="Document", choices=[])
                    delete = gr.Button("Remove document", variant="stop")
                    rebuild_button = gr.Button("Re-embed everything", size="sm")
            result = gr.Markdown()
        outputs = [result, table, summary, chosen]
        add.click(upload, inputs=files, outputs=[files, *outputs], concurrency_id="kb", concurrency_limit=1)
        delete.click(remove, inputs=chosen, outputs=outputs, concurrency_id="kb", concurrency_limit=1)
        rebuild_button.click(rebuild, outputs=outputs, concurrency_id="kb", concurrency_limit=1)
        ui.load(refresh, outputs=[table, summary, chosen])
        build_conversations_tab(store, ui)
        build_site_keys_tab(store, ui)
    return ui


def _size(n: int) -> str:
    if n >= 2**20:
        return f"{n / 2**20:.1f} MB"
    return f"{n / 1024:.1f} KB" if n >= 1024 else f"{n} B"


CONVERSATION_COLUMNS = ["id", "status", "updated", "messages", "first question", "site key"]
MESSAGE_COLUMNS = ["time", "who", "text", "mode", "sources"]
FILTERS = {"All": "all", "Handed off (inbox)": "handoff", "Abstained": "abstained", "Thumbs down": "thumbs_down"}


def build_conversations_tab(store: Store, ui: gr.Blocks) -> None:
    """The inbox, one conversation with a reply box, and the daily counts."""

    def listing(filter_name: str):
        rows = store.list_conversations(FILTERS.get(filter_name, "all"))
        table = [[r["id"], r["status"], r["updated"].strftime("%Y-%m-%d %H:%M:%S"), r["messages"], r["first"][:120], r["site_key"]] for r in rows]
        return table, gr.Dropdown(choices=[(f"{r['first'][:50] or '(no question yet)'} · {r['status']} · {r['id'][:8]}", r["id"]) for r in rows])

    def show(conversation_id: str | None):
        if not conversation_id:
            return [], ""
        conversation = store.conversation(conversation_id)
        if conversation is None:
            raise gr.Error("That conversation no longer exists.")
        rows = [
            [m.created.strftime("%H:%M:%S"), m.role, m.content, m.mode or "", ", ".join(s.get("source", "") for s in (m.sources or []))]
            for m in store.messages(conversation_id)
        ]
        note = "**Handed off**: the bot is quiet; your reply goes to the customer." if conversation.status == "handoff" else "The bot is answering this conversation."
        return rows, note

    def reply(conversation_id: str | None, text: str):
        if not conversation_id:
            raise gr.Error("Choose a conversation first.")
        if not text.strip():
            raise gr.Error("Write a reply first.")
        conversation = store.conversation(conversation_id)
        if conversation is not None and conversation.status != "handoff":
            store.set_status(conversation_id, "handoff")  # a person answering takes the conversation over
        store.add_message(conversation_id, "agent", text.strip()[:4000])
        return "", *show(conversation_id)

    def hand_back(conversation_id: str | None):
        if not conversation_id:
            raise gr.Error("Choose a conversation first.")
        store.set_status(conversation_id, "bot")
        return show(conversation_id)

    def counts():
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
        with gr.Row():
            answer = gr.Textbox(label="Reply to the customer", lines=2, scale=4)
            send = gr.Button("Send reply", variant="primary", scale=1)
            back = gr.Button("Hand back to the bot", scale=1)
        plot = gr.BarPlot(x="day", y="count", color="what", label="Per day: conversations, answered, abstained, handed off")
        which.change(listing, inputs=which, outputs=[conversations, picked])
        reload.click(listing, inputs=which, outputs=[conversations, picked]).then(counts, outputs=plot)
        picked.change(show, inputs=picked, outputs=[messages, status])
        send.click(reply, inputs=[picked, answer], outputs=[answer, messages, status])
        back.click(hand_back, inputs=picked, outputs=[messages, status])
        ui.load(listing, inputs=which, outputs=[conversations, picked]).then(counts, outputs=plot)


def build_site_keys_tab(store: Store, ui: gr.Blocks) -> None:
    """Site keys and their allowed origins: what a website's widget tag carries."""

    def keys():
        sites = store.site_keys()
        return [[s.key, s.name, " ".join(s.origins), s.created.strftime("%Y-%m-%d")] for s in sites], gr.Dropdown(choices=[(f"{s.name} · {s.key}", s.key) for s in sites], value=None)

    def create(name: str, origins: str):
        try:
            site = store.create_site_key(name.strip() or "website", origins.split())
        except ChatbotError as e:
            raise gr.Error(str(e)) from e
        snippet = f'<script src="https://YOUR-KEFU-HOST/widget.js" data-site-key="{site.key}" async></script>'
        return f"Created `{site.key}` for {as_text(', '.join(site.origins))}. Paste into the website:\n\n```html\n{snippet}\n```", *keys()

    def delete(key: str | None):
        if not key:
            raise gr.Error("Choose a site key first.")
        store.delete_site_key(key)
        return f"Deleted `{key}`: widgets using it stop working.", *keys()

    with gr.Tab("Site keys · 网站密钥"):
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
