"""A question, in its conversation, becomes ranked passages with scores.

History-aware: a follow-up ("and if I opened it?") is embedded together with the user's previous
turns (their vectors blended in with `retrieval.history_weight`), so it still finds the passage the
conversation is about. The curated FAQ questions are matched against the question on its own.
Passages in the user's language are preferred when any were found.

This module ranks; it does not decide whether to answer (`dialogue.decide`) or call the LM.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from langchain_core.embeddings import Embeddings

from chatbot.config import RetrievalSettings
from chatbot.index import Hit, KnowledgeIndex
from chatbot.language import detect_language


@dataclass(frozen=True)
class Retrieval:
    """What retrieval found for one turn."""

    passages: list[Hit]  # best first, in the user's language when any were found
    faq: Hit | None  # the closest curated FAQ question to the question on its own
    lang: str
    elapsed_ms: float
    # The question's own similarity to the passage ranked first (ranked with the conversation):
    # a follow-up about the same subject stays high, an unrelated question after it does not.
    relevance: float = -1.0


class Retriever:
    """Searches one knowledge index with one embedder; shared by every session, read-only."""

    def __init__(self, index: KnowledgeIndex, embedder: Embeddings, settings: RetrievalSettings) -> None:
        self.index = index
        self.embedder = embedder
        self.settings = settings

    def retrieve(self, question: str, previous_questions: list[str] | None = None) -> Retrieval:
        """Passages for `question`, asked after `previous_questions` (oldest first)."""
        started = time.perf_counter()
        lang = detect_language(question)
        question_vector = np.asarray(self.embedder.embed_query(question), dtype=np.float32)
        search_vector = self._with_context(question_vector, previous_questions or [])
        hits = self.index.search(search_vector.tolist(), self.settings.top_k * 2)
        same_language = [h for h in hits if h.chunk.metadata.get("lang") == lang]
        passages = (same_language or hits)[: self.settings.top_k]
        faq = self.index.best_faq(question_vector.tolist())
        relevance = float(self.index.passage_vector(passages[0].row) @ question_vector) if passages else -1.0
        return Retrieval(passages, faq, lang, (time.perf_counter() - started) * 1000, relevance)

    def _with_context(self, question_vector: np.ndarray, previous: list[str]) -> np.ndarray:
        recent = previous[-self.settings.history_turns :] if self.settings.history_turns else []
        if not recent or self.settings.history_weight == 0:
            return question_vector
        context = np.mean([self.embedder.embed_query(q) for q in recent], axis=0)
        blended = question_vector + self.settings.history_weight * context
        return blended / max(float(np.linalg.norm(blended)), 1e-12)
