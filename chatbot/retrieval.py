"""A question, in its conversation, becomes ranked passages with scores.

- Subject tracking: passages carry titles (the product, venue or document they belong to), and a
  conversation usually stays on the title it named last. When the question or an earlier turn names
  a title, the search is restricted to that title's passages.
- History-aware search otherwise: the question is embedded (and BM25-searched) together with the
  user's last `retrieval.history_turns` turns, so a follow-up ("and if I opened it?") finds its subject.
- Hybrid: BM25 over the question and the same previous turns ranks beside the dense search, and the
  two rankings are fused by reciprocal rank (`retrieval.fusion: rrf`).
- Passages in the user's language are preferred when any were found.
- The curated FAQ questions are matched against the question on its own.

This module ranks; it does not decide whether to answer (`dialogue.decide`) or call the LM.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import numpy as np
from langchain_core.embeddings import Embeddings

from chatbot.config import RetrievalSettings
from chatbot.index import Hit, KnowledgeIndex
from chatbot.language import detect_language
from chatbot.lexical import tokenize, warm_up

Message = dict[str, str]
_NOT_WORD = re.compile(r"[^0-9a-z\u3400-\u4dbf\u4e00-\u9fff]+")
_MIN_TITLE_CHARS = 4
_CANDIDATES = 100  # how deep each ranking goes before fusion


@dataclass(frozen=True)
class Retrieval:
    """What retrieval found for one turn."""

    passages: list[Hit]  # best first, in the user's language when any were found
    faq: Hit | None  # the closest curated FAQ question to the question on its own
    lang: str
    elapsed_ms: float
    # The question's own best similarity to the passages an answer would be given (ranked with the
    # conversation): a follow-up about the same subject stays high, an unrelated question does not.
    relevance: float = -1.0
    subject: str | None = None  # the title the search was restricted to


def _normalise(text: str) -> str:
    return f" {_NOT_WORD.sub(' ', text.lower()).strip()} "


def title_keys(titles: list[str], texts_by_title: dict[str, list[str]]) -> dict[str, str]:
    """How each title may be named in a conversation: in full, and without the words that many
    titles share ("The Acorn Guest House" is also "acorn"), where that shorter name is a name: no
    passage of another title uses its words ("payment" is not the name of "FAQ: payment").
    Keys are normalised and space-padded."""
    used_by: dict[str, set[str]] = {}
    for title, texts in texts_by_title.items():
        for word in set(_normalise(" ".join(texts)).split()):
            used_by.setdefault(word, set()).add(title)
    words = {title: _normalise(title).split() for title in titles}
    counts: dict[str, int] = {}
    for ws in words.values():
        for w in set(ws):
            counts[w] = counts.get(w, 0) + 1
    common = {w for w, c in counts.items() if c >= max(3, len(titles) // 20)} | {"the", "and", "of", "a"}
    keys: dict[str, str] = {}
    short: dict[str, list[str]] = {}
    for title, ws in words.items():
        full = f" {' '.join(ws)} "
        if len(full.strip()) >= _MIN_TITLE_CHARS:
            keys[full] = title
        distinctive = " ".join(w for w in ws if w not in common)
        if len(distinctive) >= _MIN_TITLE_CHARS:
            short.setdefault(f" {distinctive} ", []).append(title)
    for key, owners in short.items():
        users = set.intersection(*(used_by.get(w, set()) for w in key.split()))
        if len(owners) == 1 and key not in keys and users <= {owners[0]}:
            keys[key] = owners[0]
    return keys


class Retriever:
    """Searches one knowledge index with one embedder; shared by every session, read-only."""

    def __init__(self, index: KnowledgeIndex, embedder: Embeddings, settings: RetrievalSettings) -> None:
        self.index = index
        self.embedder = embedder
        self.settings = settings
        texts = {title: [index.chunks[row].page_content for row in rows] for title, rows in index.titles.items()}
        self._titles = title_keys(list(index.titles), texts)
        # A title's language is its passages': a Chinese question never tracks an English document.
        self._title_lang = {
            title: max(("en", "zh"), key=lambda lang, rows=rows: sum(index.chunks[r].metadata.get("lang") == lang for r in rows))
            for title, rows in index.titles.items()
        }
        warm_up()

    def retrieve(self, question: str, history: list[Message] | None = None, k: int | None = None) -> Retrieval:
        """The best `k` (default `retrieval.top_k`) passages for `question`, asked after `history`."""
        started = time.perf_counter()
        k = k or self.settings.top_k
        history = history or []
        lang = detect_language(question)
        question_vector = np.asarray(self.embedder.embed_query(question), dtype=np.float32)
        # The user's own earlier turns: an answer's text pulls a follow-up towards that answer's passage
        # ("What if I already opened it?" after the how-to-return answer; docs/quality.md).
        previous = [m["content"] for m in history if m["role"] == "user"][-self.settings.history_turns :] if self.settings.history_turns else []
        subject = self.subject(question, history, lang) if self.settings.subject_tracking else None
        if subject is not None:  # the subject carries the context: rank its passages by the question
            search_vector, query_text = question_vector, question
        else:
            query_text = " ".join([*previous, question])
            search_vector = self._with_context(question, question_vector, previous)
        rows = self._rank(search_vector, query_text, subject, 2 * k)
        hits = [Hit(self.index.chunks[r], float(self.index.vectors[r] @ search_vector), int(r)) for r in rows]
        same_language = [h for h in hits if h.chunk.metadata.get("lang") == lang]
        passages = (same_language or hits)[:k]
        faq = self.index.best_faq(question_vector.tolist())
        given = [h.row for h in passages[: self.settings.passages_in_prompt]]
        relevance = float(np.max(self.index.vectors[given] @ question_vector)) if given else -1.0
        return Retrieval(passages, faq, lang, (time.perf_counter() - started) * 1000, relevance, subject)

    def subject(self, question: str, history: list[Message], lang: str | None = None) -> str | None:
        """The title named last, in the question's language (`lang`, when given): in the question,
        else in the newest earlier turn that names one."""
        for text in [question, *(m["content"] for m in reversed(history))]:
            normalised = _normalise(text)
            found = [
                (normalised.rfind(key), len(key), title)
                for key, title in self._titles.items()
                if key in normalised and (lang is None or self._title_lang.get(title) == lang)
            ]
            if found:
                return max(found)[2]
        return None

    def _rank(self, vector: np.ndarray, query_text: str, subject: str | None, depth: int) -> list[int]:
        """Row numbers, best first: dense (and BM25, fused) over the subject's passages or all."""
        if subject is not None:
            candidates = self.index.titles[subject]
            dense = self.index.vectors[candidates] @ vector
        else:
            hits = self.index.search(vector.tolist(), _CANDIDATES)
            candidates = np.asarray([h.row for h in hits])
            dense = np.asarray([h.score for h in hits], dtype=np.float32)
        order = np.argsort(-dense, kind="stable")
        if self.settings.fusion == "dense":
            return candidates[order][:depth].tolist()
        fused: dict[int, float] = {}
        for rank, i in enumerate(order[:_CANDIDATES]):
            fused[int(candidates[i])] = 1.0 / (self.settings.rrf_k + rank + 1)
        lexical = self.index.bm25_scores(tokenize(query_text))
        if subject is not None:
            lexical_rows = candidates[np.argsort(-lexical[candidates], kind="stable")][:_CANDIDATES]
            lexical_rows = [r for r in lexical_rows if lexical[r] > 0]
        else:
            top = np.argpartition(-lexical, min(_CANDIDATES, len(lexical) - 1))[:_CANDIDATES]
            lexical_rows = [r for r in top[np.argsort(-lexical[top], kind="stable")] if lexical[r] > 0]
        for rank, row in enumerate(lexical_rows):
            fused[int(row)] = fused.get(int(row), 0.0) + self.settings.bm25_weight / (self.settings.rrf_k + rank + 1)
        return sorted(fused, key=lambda r: -fused[r])[:depth]

    def _with_context(self, question: str, question_vector: np.ndarray, previous: list[str]) -> np.ndarray:
        """The question embedded together with the previous turns' text (measured better than
        blending their vectors: docs/quality.md)."""
        if not previous:
            return question_vector
        return np.asarray(self.embedder.embed_query(" ".join([*previous, question])), dtype=np.float32)
