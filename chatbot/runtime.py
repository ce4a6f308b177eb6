"""Build the shared objects of a running Kefu from its settings: the embedder, the knowledge base
(its index made ready: built, re-embedded or synced with the knowledge folder as needed), the chat
model and the dialogue manager; and keep the manager on the live index version."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from langchain_core.embeddings import Embeddings

from chatbot.calibration import OFF_TOPIC_FILE
from chatbot.config import Settings
from chatbot.dialogue import DialogueManager
from chatbot.embeddings import make_embeddings
from chatbot.kb import KnowledgeBase, Report
from chatbot.llm import ChatModel, make_chat_model
from chatbot.prompts import Prompts
from chatbot.retrieval import Retriever
from chatbot.turns import TurnForms

log = logging.getLogger(__name__)


def build_dialogue_manager(settings: Settings, model: ChatModel | None = None) -> DialogueManager:
    """Everything one process needs to answer; `model` replaces the configured LM (tests)."""
    started = time.perf_counter()
    retriever = build_retriever(settings)
    if model is None:
        model = make_chat_model(settings.llm, settings.model_cache_dir)
    manager = DialogueManager(settings, retriever, model, Prompts(settings.prompts_dir))
    index = retriever.index
    log.info(
        "ready in %.1f s: %d chunks (index %s), embedder %s, model %s",
        time.perf_counter() - started, len(index.chunks), index.version, index.manifest["embedder"], model.name,
    )
    return manager


def build_retriever(settings: Settings) -> Retriever:
    """Retrieval over the live index version (synced with the knowledge folder first), without the LM."""
    embedder = make_embeddings(settings.embeddings, settings.model_cache_dir)
    index = KnowledgeBase(settings, embedder).open(on_sync=audit_folder_sync(settings))
    return Retriever(index, embedder, settings.retrieval, turn_forms(settings, embedder))


def audit_folder_sync(settings: Settings) -> Callable[[Report], None]:
    """Writes what a sync with the knowledge folder changed to the audit log (actor
    "knowledge-folder", action "kb-sync"), as `chatbot kb add/remove` and the admin page write theirs;
    the store is opened only when something changed."""

    def record(report: Report) -> None:
        from chatbot.store import Store, database_url

        names = [d["name"] for d in report.added + report.replaced + report.removed]
        detail = {"version": report.version, "added": len(report.added), "replaced": len(report.replaced), "removed": len(report.removed)}
        Store(database_url(settings.database.url, settings.data_dir)).audit("knowledge-folder", "kb-sync", ", ".join(names)[:300], detail=detail)

    return record


def turn_forms(settings: Settings, embedder: Embeddings) -> TurnForms:
    """The turn-form examples and the off-topic probes, embedded."""
    return TurnForms.load(settings.prompts_dir / "turns.yaml", embedder, settings.retrieval.request_neighbours, settings.data_dir / "cache" / "embeddings",
                          settings.prompts_dir / OFF_TOPIC_FILE)


class IndexWatcher:
    """Keeps a manager on the live index version, made by this process or another (`chatbot kb`).

    The web layer calls `refresh` before each turn (one small file read), so a turn that starts after
    a removal returned never sees the removed document; a background thread also looks every
    `kb.reload_interval_s`, so an idle server is up to date too."""

    def __init__(self, kb: KnowledgeBase, manager: DialogueManager) -> None:
        self.kb = kb
        self.manager = manager
        self._loading = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="index-watcher", daemon=True)

    def start(self) -> IndexWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def refresh(self) -> bool:
        """Load the live version if the manager is not on it; whether it changed."""
        version = self.kb.versions.current()
        if version is None or version == self.manager.retriever.index.version:
            return False
        with self._loading:  # one loader; turns arriving meanwhile wait for it, then use the new version
            if self.manager.retriever.index.version == self.kb.versions.current():
                return False
            index = self.kb.live()
            self.manager.use_index(index)
        log.info("now answering from index %s (%d chunks)", index.version, len(index.chunks))
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.kb.settings.kb.reload_interval_s):
            try:
                self.refresh()
            except Exception:  # a half-visible version is retried on the next tick; answering goes on
                log.exception("could not load the new index version; still answering from %s", self.manager.retriever.index.version)
