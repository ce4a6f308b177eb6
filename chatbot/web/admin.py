"""The admin page (Gradio, at `/admin` behind the admin password): the documents of the knowledge
base, uploads of several files at once with progress, replace (upload a file of the same name) and
remove, rebuild, and the live index version. Every change goes through `KnowledgeBase` and the
chat answers from the new version as soon as it is live."""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr

from chatbot.errors import ChatbotError
from chatbot.kb import KnowledgeBase, Report, Upload
from chatbot.runtime import IndexWatcher

log = logging.getLogger(__name__)
COLUMNS = ["id", "name", "type", "chunks", "size", "added", "status"]


def document_rows(kb: KnowledgeBase) -> tuple[list[list], str]:
    """The table rows (documents, then files the knowledge folder could not give) and a summary."""
    index = kb.live()
    docs = kb.documents(index)
    rows = [[d["id"], d["name"], d["type"], d["chunks"], _size(d["size"]), d["added"].replace("T", " "), f"indexed ({d['origin']})"] for d in docs]
    rows += [["", error.split(": ", 1)[0], "", 0, "", "", "refused: " + error.split(": ", 1)[-1]] for error in index.manifest.get("refused", [])]
    summary = (
        f"**Index version** `{index.version}` · {len(docs)} documents · {len(index.chunks)} chunks · "
        f"embedder `{index.manifest['embedder']}` · made {index.manifest['created']}"
    )
    return rows, summary


def report_markdown(report: Report) -> str:
    """What an upload, removal or rebuild did, for the admin to read."""
    lines = []
    for label, docs in (("Added", report.added), ("Replaced", report.replaced), ("Removed", report.removed)):
        lines += [f"- **{label}** {d['name']} ({_chunks(d['chunks'])})" for d in docs]
    lines += [f"- **Unchanged** {name}: already in the knowledge base" for name in report.unchanged]
    lines += [f"- **Refused** {error}" for error in report.refused]
    lines.append(f"\nIndex version `{report.version}` is live ({_chunks(report.embedded_chunks)} embedded in {report.seconds:.1f} s).")
    return "\n".join(lines)


def build_admin_ui(kb: KnowledgeBase, watcher: IndexWatcher) -> gr.Blocks:
    """The admin page for `kb`; `watcher` moves the chat onto each new version at once."""

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
        gr.Markdown("## Kefu admin · knowledge base / 知识库管理")
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
    return ui


def _chunks(n: int) -> str:
    return f"{n} chunk" if n == 1 else f"{n} chunks"


def _size(n: int) -> str:
    if n >= 2**20:
        return f"{n / 2**20:.1f} MB"
    return f"{n / 1024:.1f} KB" if n >= 1024 else f"{n} B"
