"""The web app: FastAPI with the API for websites at `/api` and the widget at `/widget.js`, the
Gradio chat page mounted at `/`, the admin page at `/admin` (when a staff user or an admin password exists) and a
health check at `/healthz`; OpenAPI at `/openapi.json`."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import gradio as gr
from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from chatbot import __version__
from chatbot.dialogue import DialogueManager
from chatbot.runtime import IndexWatcher
from chatbot.store import Store, database_url
from chatbot.web.api import add_api
from chatbot.web.chat_ui import build_chat_ui
from chatbot.staff import Accounts, login_guard
from chatbot.web.security import BodyLimit, SignInGuard, Tokens, load_secret

log = logging.getLogger(__name__)
WIDGET = Path(__file__).with_name("static") / "widget.js"

ADMIN_OFF = """<!doctype html><html><head><meta charset="utf-8"><title>Kefu admin is off</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h2>The admin page is off</h2>
<p>No staff user exists and no admin password is set. Add a user, or start Kefu with a password, for example:</p>
<pre>chatbot user add alice --role owner</pre>
<pre>CHATBOT_ADMIN_PASSWORD='a long secret' make run</pre>
<p>Then sign in here as that user, or as <code>admin</code> (the name in <code>admin.user</code>) with that password.
Documents can also be managed from the command line: <code>chatbot kb add|list|remove|rebuild</code>.</p>
</body></html>"""


PURGE_EVERY_S = 24 * 3600


def _lifespan(store: Store, retention_days: int):
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Each streamed answer holds a worker thread while it waits for a model context: allow many
        # more than anyio's default 40, so 50+ open conversations never queue behind the pool.
        anyio.to_thread.current_default_thread_limiter().total_tokens = 256
        stop = threading.Event()
        if retention_days:
            threading.Thread(target=_purge_daily, args=(store, retention_days, stop), name="retention-purge", daemon=True).start()
        yield
        stop.set()

    return lifespan


def _purge_daily(store: Store, retention_days: int, stop: threading.Event) -> None:
    """`privacy.retention_days` applied at start and then once a day."""
    while True:
        try:
            counts = store.purge(retention_days)
            log.info("retention purge: %s", counts)
        except Exception:
            log.exception("the retention purge failed; it runs again in a day, or now with `chatbot privacy purge`")
        if stop.wait(PURGE_EVERY_S):
            return


def create_app(manager: DialogueManager, watcher: IndexWatcher | None = None) -> FastAPI:
    """The ASGI app serving one dialogue manager: the API and widget, the chat page, and with a
    `watcher` (which follows new knowledge versions) the admin page."""
    settings = manager.settings
    store = Store(database_url(settings.database.url, settings.data_dir))
    app = FastAPI(title="Kefu", version=__version__, lifespan=_lifespan(store, settings.privacy.retention_days))
    before_turn = watcher.refresh if watcher else lambda: None  # a removed document is never answered again
    # Added before the API's CORS handling, so it sits inside it: the 413 carries the CORS headers.
    app.add_middleware(BodyLimit, limit=settings.security.max_body_kb * 1024, hint=f": a message may have at most {settings.dialogue.max_message_chars} characters")
    add_api(app, manager, store, Tokens(load_secret(settings.security.secret_key, settings.data_dir, store.signing_secret()), settings.security.token_ttl_s), before_turn)

    @app.get("/widget.js", include_in_schema=False)
    def widget() -> FileResponse:
        return FileResponse(WIDGET, media_type="text/javascript", headers={"Cache-Control": "public, max-age=300"})

    @app.get("/healthz")
    def healthz() -> dict:
        index = manager.retriever.index
        return {"status": "ok", "index_version": index.version, "chunks": len(index.chunks), "model": manager.model.name}

    if watcher is not None:
        accounts = Accounts(store, settings.admin.user, settings.admin.password)
        if accounts.any():
            from chatbot.web.admin import build_admin_ui

            admin = build_admin_ui(watcher.kb, watcher, store, accounts)
            admin.queue(default_concurrency_limit=2)
            # Gradio refuses far larger files itself; those just over the limit get Kefu's own message.
            limit = int(2 * settings.kb.max_file_mb * 2**20)
            gr.mount_gradio_app(app, admin, path="/admin", auth=accounts.verify, max_file_size=limit, footer_links=[])
            app.add_middleware(SignInGuard, path="/admin/login", guard=login_guard(settings.security.limits_storage), audit=lambda who, action, address: store.audit(who, action, "admin page", address))

            # The mount answers /admin/ only; without this, the address that start-up prints and the
            # README gives (/admin) fell through to the chat page's mount and got a 404.
            @app.get("/admin", include_in_schema=False)
            def admin_page() -> RedirectResponse:
                return RedirectResponse("/admin/")
        else:

            @app.get("/admin", response_class=HTMLResponse, include_in_schema=False)
            @app.get("/admin/", response_class=HTMLResponse, include_in_schema=False)
            def admin_off() -> str:
                return ADMIN_OFF

    ui = build_chat_ui(manager, store, settings.server.concurrency_limit, before_turn)
    ui.queue(default_concurrency_limit=settings.server.concurrency_limit)
    return gr.mount_gradio_app(app, ui, path="/", footer_links=["api"])
