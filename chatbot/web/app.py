"""The web app: FastAPI with the Gradio chat page mounted at `/` and a health check at `/healthz`."""

from __future__ import annotations

import gradio as gr
from fastapi import FastAPI

from chatbot import __version__
from chatbot.dialogue import DialogueManager
from chatbot.web.chat_ui import build_chat_ui


def create_app(manager: DialogueManager) -> FastAPI:
    """The ASGI app serving one dialogue manager."""
    app = FastAPI(title="Kefu", version=__version__)
    index = manager.retriever.index

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "index_version": index.version, "chunks": len(index.chunks), "model": manager.model.name}

    ui = build_chat_ui(manager, manager.settings.server.concurrency_limit)
    ui.queue(default_concurrency_limit=manager.settings.server.concurrency_limit)
    return gr.mount_gradio_app(app, ui, path="/", footer_links=["api"])
