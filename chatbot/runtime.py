"""Build the shared, read-only objects of a running Kefu from its settings: the embedder, the
knowledge index (built first when missing or stale), the chat model, and the dialogue manager."""

from __future__ import annotations

import logging
import time

from chatbot.config import Settings
from chatbot.dialogue import DialogueManager
from chatbot.embeddings import make_embeddings
from chatbot.index import ensure_index
from chatbot.llm import ChatModel, make_chat_model
from chatbot.prompts import Prompts
from chatbot.retrieval import Retriever

log = logging.getLogger(__name__)


def build_dialogue_manager(settings: Settings, model: ChatModel | None = None) -> DialogueManager:
    """Everything one process needs to answer; `model` replaces the configured LM (tests)."""
    started = time.perf_counter()
    embedder = make_embeddings(settings.embeddings)
    index = ensure_index(settings.knowledge_dir, settings.index_dir, embedder)
    if model is None:
        model = make_chat_model(settings.llm, settings.model_cache_dir)
    manager = DialogueManager(settings, Retriever(index, embedder, settings.retrieval), model, Prompts(settings.prompts_dir))
    log.info(
        "ready in %.1f s: %d chunks (index %s), embedder %s, model %s",
        time.perf_counter() - started, len(index.chunks), index.version, index.manifest["embedder"], model.name,
    )
    return manager
