"""`DialogueManager`: one customer turn, from message to streamed reply.

check limits → detect language → retrieve with the conversation's earlier questions → decide:
  faq       a confident match to a curated FAQ question in the user's language: its answer, verbatim,
            with no LM call
  generate  the sentence of the top passages that answers best, quoted with its source at once,
            then the LM's one-sentence answer from the best three sentences alone, shown only when
            the checks in code pass (`checks.py`); otherwise those three sentences stand alone,
            quoted, with a line offering a person. The sources are exactly the passages the
            sentences were chosen from.
  abstain   a fixed reply in the user's language that offers a person
The decision comes from retrieval scores, never from what the LM says (the small offline model
invents answers when a passage does not cover the question).

History is the caller's (per session); the manager keeps no per-user state. No web code here, no
model code: the `ChatModel` and `Retriever` are passed in.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from chatbot.calibration import Thresholds, resolve, topic_score, turn_topic
from chatbot.checks import check, is_yes_no, same_case
from chatbot.config import Settings
from chatbot.errors import ModelBusyError, UserError
from chatbot.evidence import Evidence, case_first, select
from chatbot.index import KnowledgeIndex
from chatbot.language import detect_language
from chatbot.llm import ChatModel, Message
from chatbot.privacy import Masker
from chatbot.prompts import Prompts
from chatbot.retrieval import Retrieval, Retriever

log = logging.getLogger(__name__)
Mode = Literal["faq", "generate", "abstain"]
EVIDENCE_SENTENCES = 3  # the sentences the LM answers from; the best is quoted
# The openings of a yes/no answer (the LM is held to them where its backend can be: `ChatModel.stream`).
VERDICTS = {"en": ("Yes, ", "No, ", "Not stated."), "zh": ("是的，", "可以，", "不可以，", "不能，", "不是，", "没有，", "资料没有说明。")}
_SURROGATE = re.compile("[\ud800-\udfff]")  # half of a UTF-16 pair: cannot be stored or sent as UTF-8
NOT_STATED = ("not stated", "no stated", "资料没有说明")  # anywhere in the answer ("No, Not stated.")


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
    quote: tuple[int, int] | None = None  # the quoted sentence's offsets in `text`, where it is this passage's

    def as_dict(self) -> dict:
        quote = {"start": self.quote[0], "end": self.quote[1]} if self.quote else None
        return {"id": self.id, "title": self.title, "score": round(self.score, 4), "heading": self.heading, "source": self.source, "page": self.page,
                "text": self.text, "quote": quote}


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
    # For a generated answer, once streamed: the checks its paraphrase failed ([] = shown; "busy",
    # "error" or "not_stated" = the LM gave none), so the quote stood alone; None otherwise.
    checks: list[str] | None = None
    quote: str | None = None  # the quote that opens a generated answer or a refused request (its first paragraph), as shown

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
            "checks": self.checks,
            "timings": {k: round(v, 1) for k, v in self.timings.items()},
        }


def decide(retrieval: Retrieval, thresholds: Thresholds) -> Mode:
    """The decision rule, on retrieval scores alone (`abstain_reason` says why it abstains).

    faq       a curated FAQ in the user's language whose question matches at `thresholds.faq`, or
              whose question is the closest match *and* whose Q+A is the passage ranked first for
              a turn about this knowledge (two retrievers agree: docs/calibration.md); either only
              where the entry is about the customer's case (`checks.same_case`: not "opened" for
              a sealed kettle); the agreement also answers a turn phrased as a request that is
              about this knowledge ("Can you add it to my order?" where an entry says whether)
    abstain   the turn asks to act, choose or close rather than asks a question (its form scores
              `thresholds.request` or more: `turns.py`) about something this knowledge does not
              cover closely (`thresholds.covered`), or it is not about this knowledge
              (`calibration.turn_topic` under the language's calibrated threshold)
    generate  otherwise
    """
    faq = retrieval.faq
    faq_usable = faq is not None and faq.chunk.metadata.get("lang") == retrieval.lang and same_case(
        retrieval.question, faq.chunk.page_content, str(faq.chunk.metadata.get("question") or ""))
    if faq_usable and faq.score >= thresholds.faq:
        return "faq"
    agree = faq_usable and bool(retrieval.passages) and retrieval.passages[0].chunk.metadata.get("id") == faq.chunk.metadata.get("id")
    reason = abstain_reason(retrieval, thresholds)
    if reason == "request" and agree and _on_topic(retrieval, thresholds):
        return "faq"  # "Can you add it to my order?" where an entry says how
    if reason is not None:
        return "abstain"
    return "faq" if agree else "generate"


def _on_topic(retrieval: Retrieval, thresholds: Thresholds) -> bool:
    return bool(retrieval.passages) and turn_topic(retrieval, thresholds.floor.get(retrieval.lang, -1.0)) >= thresholds.answer_for(retrieval.lang)


def abstain_reason(retrieval: Retrieval, thresholds: Thresholds) -> str | None:
    """Why a turn is not answered from the knowledge, unless a curated FAQ matches it outright:
    "request" (it asks to act, choose or close), "off_topic" (not about this knowledge), or None."""
    if thresholds.request is not None and retrieval.request >= thresholds.request:
        # ...unless this knowledge covers what it asks as closely as most of its own questions
        # ("I want to cancel my number" where a passage says how; not "book me a table at the Acorn")
        if topic_score(retrieval.topic_unnamed or retrieval.topic, retrieval.lang) < thresholds.covered.get(retrieval.lang, math.inf):
            return "request"
    if not _on_topic(retrieval, thresholds):
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
        self.masker = Masker(settings.privacy.mask)
        self._sentence_vectors: dict = {}  # the evidence sentences embedded so far (`evidence.select`), by text

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
        passages = case_first(retrieval.passages, question)[: self.settings.retrieval.passages_in_prompt]
        if mode == "abstain":  # a request to act gets told so, a question that the knowledge does not cover the usual reply
            if abstain_reason(retrieval, thresholds) != "request":
                return Reply(mode, lang, [], timings, iter([self.prompts.render("abstain", lang=lang, business=self.business)]), started)
            told = self.prompts.render("request", lang=lang, business=self.business)
            # A request about this knowledge ("Can you deliver to my PO box?") also gets the sentence of
            # it nearest the request, quoted with its source first: what the business says about it;
            # only a sentence as near the request as the calibrated threshold asks of a question (not a
            # sentence of the passages an earlier turn brought, beside the point of this one).
            best = select(retriever.embedder, retrieval.vector, passages, lang, 1, self._sentence_vectors) if retrieval.vector is not None and _on_topic(retrieval, thresholds) else []
            if not best or best[0].score < thresholds.answer_for(lang):
                return Reply(mode, lang, [], timings, iter([told]), started)
            reply = Reply(mode, lang, [_source(best[0].hit, self.settings.retrieval.passage_chars, best[0])], timings, iter(()), started)
            reply.quote = self.prompts.render("quote", lang=lang, title=best[0].title, quote=best[0].text)
            reply._pieces = iter([reply.quote, f"\n\n{told}"])  # shown as a generated answer's quote is
            return reply
        evidence = select(retriever.embedder, retrieval.vector, passages, lang, EVIDENCE_SENTENCES, self._sentence_vectors, question) if retrieval.vector is not None else []
        sources = [_source(h, self.settings.retrieval.passage_chars, evidence[0] if evidence else None) for h in passages]
        sentences = [e.text for e in evidence] or [s.text for s in sources]
        messages = self.build_messages(question, sentences, history, lang)
        reply = Reply(mode, lang, sources, timings, iter(()), started)
        reply._pieces = self._answer(reply, messages, evidence, sentences, question, retriever.index.names)
        return reply

    def thresholds(self, retriever: Retriever | None = None) -> Thresholds:
        """The decision's thresholds for the index version `retriever` (default: the live one) searches."""
        retriever = retriever or self.retriever
        return resolve(self.settings.retrieval, retriever.index.manifest.get("calibration"))

    def build_messages(self, question: str, sentences: list[str], history: list[Message], lang: str) -> list[Message]:
        """The chat messages for a grounded answer: fixed system text (its template also gets
        `yes_no`, whether the question asks for a verdict), the earlier turns that
        `dialogue.prompt_history` keeps, trimmed, the evidence sentences numbered + the question."""
        budget = self.settings.dialogue.history_token_budget
        kept = self.settings.dialogue.prompt_history
        if kept != "both":
            history = [m for m in history if m["role"] == "user"] if kept == "user" else []
        return [
            {"role": "system", "content": self.prompts.render("system", lang=lang, business=self.business, yes_no=is_yes_no(question))},
            *trim_history(history, budget, self.model.count_tokens),
            {"role": "user", "content": self.prompts.render("user", lang=lang, sentences=sentences, question=question)},
        ]

    def _answer(self, reply: Reply, messages: list[Message], evidence: list[Evidence], sentences: list[str], question: str, known) -> Iterator[str]:
        """The best sentence quoted at once, then the LM's answer to `question` whole once it passes
        the checks against `sentences` (a yes/no question's answer opens with a verdict); else the
        other evidence sentences quoted too, and a line that offers a person (`known`: whether the
        knowledge names a word, `KnowledgeIndex.names`). Sets `reply.checks`."""
        lang = reply.lang
        starts = VERDICTS[lang] if is_yes_no(question) else ()
        if evidence:
            reply.quote = self.prompts.render("quote", lang=lang, title=evidence[0].title, quote=evidence[0].text)
            yield reply.quote
        try:
            answer = "".join(self.model.stream(messages, starts=starts)).strip()
        except ModelBusyError as e:  # no model free soon: the quote now beats a long wait
            log.warning("%s", e)
            reply.checks = ["busy"]
        except Exception:
            log.exception("the chat model failed while answering")
            reply.checks = ["error"]
        else:
            reply.checks = ["not_stated"] if not answer or any(n in answer.lower() for n in NOT_STATED) else check(answer, sentences, question, tuple(e.title for e in evidence), known)
        if not reply.checks:
            yield ("\n\n" if evidence else "") + answer
            return
        log.info("the generated answer was not shown: %s", ", ".join(reply.checks))  # no customer text in the log
        also = [self.prompts.render("quote", lang=lang, title=e.title, quote=e.text, also=True) for e in evidence[1:]]
        # with nothing quoted (passages without a sentence of four letters), the usual "I don't know"
        template = {"busy": "busy", "error": "error"}.get(reply.checks[0], "unchecked" if evidence else "abstain")
        yield "".join(f"\n\n{line}" for line in also) + ("\n\n" if evidence else "") + self.prompts.render(template, lang=lang, business=self.business)

    def check(self, message: str, history: list[Message]) -> str:
        """`message` stripped and its personal data masked (`privacy.mask`), or `UserError` (in the
        user's language) when it is empty, not text (a NUL character, a lone surrogate), over
        `dialogue.max_message_chars`, or past `dialogue.max_turns`: what `respond` refuses, for a
        caller that must know before it stores the turn. Whatever is stored, logged or put in a
        prompt is what this returns."""
        question = (message or "").strip()
        lang = detect_language(question)
        limits = self.settings.dialogue
        if not question:
            raise UserError(self.prompts.render("empty_message", lang=lang))
        if "\x00" in question or _SURROGATE.search(question):
            raise UserError(self.prompts.render("not_text", lang=lang))
        if len(question) > limits.max_message_chars:
            raise UserError(self.prompts.render("message_too_long", lang=lang, length=len(question), limit=limits.max_message_chars), status=413)
        if sum(1 for m in history if m["role"] == "user") >= limits.max_turns:
            raise UserError(self.prompts.render("too_many_turns", lang=lang, limit=limits.max_turns))
        return self.masker.mask(question)


def _source(hit, passage_chars: int, quote: Evidence | None = None) -> Source:
    """A passage shown under an answer: its text cut at `passage_chars`, unless that would cut the
    quoted sentence (`quote`, where it is this passage's), whose offsets it keeps."""
    meta = hit.chunk.metadata
    text = hit.chunk.page_content
    span = (quote.start, quote.end) if quote is not None and quote.hit is hit else None
    limit = max(passage_chars, span[1] if span else 0)
    if len(text) > limit:
        cut = text[:limit]
        boundary = cut.rfind(" ")
        if boundary > (span[1] if span else 0):  # at a word's end, never inside the quote
            cut = cut[:boundary]
        text = cut + " …"
    return Source(meta["id"], meta["title"], hit.score, meta.get("heading", ""), meta["source"], text, meta.get("page"), span)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
