"""`DialogueManager`: one customer turn, from message to streamed reply.

check limits → detect language → retrieve with the conversation's earlier questions → decide:
  faq       a confident match to a curated FAQ question in the user's language: its answer, verbatim,
            with no LM call
  generate  an LM answer grounded in the top passages; the sources are exactly those passages
  abstain   a fixed reply in the user's language that offers a person
The decision comes from retrieval scores, never from what the LM says (the small offline model
invents answers when a passage does not cover the question).

History is the caller's (per session); the manager keeps no per-user state. No web code here, no
model code: the `ChatModel` and `Retriever` are passed in.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from chatbot.calibration import Thresholds, resolve, topic_score, turn_topic
from chatbot.config import Settings
from chatbot.errors import ModelBusyError, UserError
from chatbot.index import KnowledgeIndex
from chatbot.language import detect_language
from chatbot.llm import ChatModel, Message
from chatbot.prompts import Prompts
from chatbot.retrieval import Retrieval, Retriever

log = logging.getLogger(__name__)
Mode = Literal["faq", "generate", "abstain"]


@dataclass(frozen=True)
class Source:
    """A passage shown under an answer."""

    id: str
    title: str
    score: float
    heading: str
    source: str
    text: str
    page: int | None = None

    def as_dict(self) -> dict:
        return {"id": self.id, "title": self.title, "score": round(self.score, 4), "heading": self.heading, "source": self.source, "page": self.page}


@dataclass
class Reply:
    """A decided reply whose text streams when iterated; `text` and `timings` fill in as it does."""

    mode: Mode
    lang: str
    sources: list[Source]
    timings: dict[str, float]
    _pieces: Iterator[str]
    _started: float
    text: str = ""

    def __iter__(self) -> Iterator[str]:
        for piece in self._pieces:
            if "first_token_ms" not in self.timings:
                self.timings["first_token_ms"] = _ms_since(self._started)
            self.text += piece
            yield piece
        self.text = self.text.strip()
        self.timings["total_ms"] = _ms_since(self._started)

    def finish(self) -> Reply:
        """Consume the whole stream; returns self."""
        for _ in self:
            pass
        return self

    def as_dict(self) -> dict:
        return {
            "answer": self.text,
            "mode": self.mode,
            "lang": self.lang,
            "sources": [s.as_dict() for s in self.sources],
            "timings": {k: round(v, 1) for k, v in self.timings.items()},
        }


def decide(retrieval: Retrieval, thresholds: Thresholds) -> Mode:
    """The decision rule, on retrieval scores alone (`abstain_reason` says why it abstains).

    faq       a curated FAQ in the user's language whose question matches at `thresholds.faq`, or
              whose question is the closest match *and* whose Q+A is the passage ranked first for
              a turn about this knowledge (two retrievers agree: docs/calibration.md)
    abstain   the turn asks to act, choose or close rather than asks a question (its form scores
              `thresholds.request` or more: `turns.py`) about something this knowledge does not
              cover closely (`thresholds.covered`), or it is not about this knowledge
              (`calibration.turn_topic` under the language's calibrated threshold)
    generate  otherwise
    """
    faq = retrieval.faq
    faq_usable = faq is not None and faq.chunk.metadata.get("lang") == retrieval.lang
    if faq_usable and faq.score >= thresholds.faq:
        return "faq"
    if abstain_reason(retrieval, thresholds) is not None:
        return "abstain"
    if faq_usable and retrieval.passages[0].chunk.metadata.get("id") == faq.chunk.metadata.get("id"):
        return "faq"
    return "generate"


def abstain_reason(retrieval: Retrieval, thresholds: Thresholds) -> str | None:
    """Why a turn is not answered from the knowledge, unless a curated FAQ matches it outright:
    "request" (it asks to act, choose or close), "off_topic" (not about this knowledge), or None."""
    if thresholds.request is not None and retrieval.request >= thresholds.request:
        # ...unless this knowledge covers what it asks as closely as most of its own questions
        # ("I want to cancel my number" where a passage says how; not "book me a table at the Acorn")
        if topic_score(retrieval.topic_unnamed or retrieval.topic, retrieval.lang) < thresholds.covered.get(retrieval.lang, math.inf):
            return "request"
    if not retrieval.passages or turn_topic(retrieval, thresholds.floor.get(retrieval.lang, -1.0)) < thresholds.answer_for(retrieval.lang):
        return "off_topic"
    return None


def trim_history(history: list[Message], budget: int, count_tokens) -> list[Message]:
    """The most recent whole turns of `history` that fit in `budget` tokens (oldest dropped first)."""
    kept: list[Message] = []
    used = 0
    for message in reversed(history):
        used += count_tokens(message["content"])
        if used > budget:
            break
        kept.append(message)
    kept.reverse()
    while kept and kept[0]["role"] != "user":  # start on a user turn
        kept.pop(0)
    return kept


class DialogueManager:
    """Answers one turn at a time; shared by every session."""

    def __init__(self, settings: Settings, retriever: Retriever, model: ChatModel, prompts: Prompts) -> None:
        self.settings = settings
        self.retriever = retriever
        self.model = model
        self.prompts = prompts
        self.business = settings.dialogue.business_name

    def use_index(self, index: KnowledgeIndex) -> None:
        """Answer from `index` from now on; a turn already retrieving finishes on the old one."""
        self.retriever = Retriever(index, self.retriever.embedder, self.settings.retrieval, self.retriever.turns)

    def respond(self, message: str, history: list[Message] | None = None) -> Reply:
        """Decide how to answer `message` after `history` (oldest first, without `message`).

        Raises `UserError`, with a reply in the user's language, for an empty or over-long message.
        """
        started = time.perf_counter()
        history = history or []
        question = self.check(message, history)
        retriever = self.retriever  # one index version for the whole turn
        thresholds = self.thresholds(retriever)
        retrieval = retriever.retrieve(question, history, enough=thresholds.answer)
        lang = retrieval.lang
        timings = {"retrieve_ms": retrieval.elapsed_ms}
        mode = decide(retrieval, thresholds)
        log.info("mode=%s lang=%s topic=%.3f request=%.3f faq=%.3f", mode, lang, turn_topic(retrieval, thresholds.floor.get(lang, -1.0)), retrieval.request, retrieval.faq.score if retrieval.faq else -1)
        if mode == "faq":
            assert retrieval.faq is not None
            hit = retrieval.faq
            return Reply(mode, lang, [_source(hit, self.settings.retrieval.passage_chars)], timings, iter([hit.chunk.metadata["answer"]]), started)
        if mode == "abstain":  # a request to act gets told so, a question that the knowledge does not cover the usual reply
            reply = "request" if abstain_reason(retrieval, thresholds) == "request" else "abstain"
            return Reply(mode, lang, [], timings, iter([self.prompts.render(reply, lang=lang, business=self.business)]), started)
        passages = retrieval.passages[: self.settings.retrieval.passages_in_prompt]
        sources = [_source(h, self.settings.retrieval.passage_chars) for h in passages]
        messages = self.build_messages(question, [s.text for s in sources], history, lang)
        return Reply(mode, lang, sources, timings, self._generate(messages, lang, sources[0].text if sources else ""), started)

    def thresholds(self, retriever: Retriever | None = None) -> Thresholds:
        """The decision's thresholds for the index version `retriever` (default: the live one) searches."""
        retriever = retriever or self.retriever
        return resolve(self.settings.retrieval, retriever.index.manifest.get("calibration"))

    def build_messages(self, question: str, passages: list[str], history: list[Message], lang: str) -> list[Message]:
        """The chat messages for a grounded answer: fixed system text, trimmed history, passages + question."""
        budget = self.settings.dialogue.history_token_budget
        return [
            {"role": "system", "content": self.prompts.render("system", lang=lang, business=self.business)},
            *trim_history(history, budget, self.model.count_tokens),
            {"role": "user", "content": self.prompts.render("user", lang=lang, passages=passages, question=question)},
        ]

    def _generate(self, messages: list[Message], lang: str, passage: str) -> Iterator[str]:
        try:
            yield from self.model.stream(messages)
        except ModelBusyError as e:  # no model free soon: the passage itself, at once, beats a long wait
            log.warning("%s", e)
            yield self.prompts.render("busy", lang=lang, passage=passage)
        except Exception:
            log.exception("the chat model failed while answering")
            yield "\n" + self.prompts.render("error", lang=lang)

    def check(self, message: str, history: list[Message]) -> str:
        """`message` stripped, or `UserError` (in the user's language) when it is empty, over
        `dialogue.max_message_chars`, or past `dialogue.max_turns`: what `respond` refuses, for a
        caller that must know before it stores the turn."""
        question = (message or "").strip()
        lang = detect_language(question)
        limits = self.settings.dialogue
        if not question:
            raise UserError(self.prompts.render("empty_message", lang=lang))
        if len(question) > limits.max_message_chars:
            raise UserError(self.prompts.render("message_too_long", lang=lang, length=len(question), limit=limits.max_message_chars))
        if sum(1 for m in history if m["role"] == "user") >= limits.max_turns:
            raise UserError(self.prompts.render("too_many_turns", lang=lang, limit=limits.max_turns))
        return question


def _source(hit, passage_chars: int) -> Source:
    meta = hit.chunk.metadata
    text = hit.chunk.page_content
    if len(text) > passage_chars:
        text = text[:passage_chars].rsplit(" ", 1)[0] + " …"
    return Source(meta["id"], meta["title"], hit.score, meta.get("heading", ""), meta["source"], text, meta.get("page"))


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
