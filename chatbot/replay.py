"""A knowledge change tried before it goes live: the stored questions of the last days and every
labelled set in `<data_dir>/evalsets/` asked of the live version and of the changed one (a shadow:
`KnowledgeBase.try_change`), and what would change.

Each question is decided by the chat's own retrieval and decision code on both versions, without
the LM: the decision, the sources and the curated answer are what a change moves, and the answer's
sentence follows from them. Only the questions whose decision or sources changed are answered
again, whole, by the chat's own dialogue manager on the changed version (the LM's sentence
included), beside the answer they got: the one stored with a stored question, or the live
version's. So a replay of 1,000 questions is two retrievals each and a few generations, not 1,000.
A change is one of:
- `abstain → answer` / `answer → abstain`;
- `another curated answer` (a different FAQ entry given verbatim, or one given where none was, or
  none where one was);
- `another source` (the passage ranked first is another).
Flagged (`Change.harmful`): a labelled in-scope question that would be refused, or a labelled
out-of-scope one that would be answered.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from chatbot.calibration import resolve
from chatbot.dialogue import decide
from chatbot.handoff import asks_for_a_person
from chatbot.retrieval import Retriever

EVALSETS = "evalsets"  # under the data dir: labelled sets (`../shared/eval` format) every replay runs
ANSWERED_AGAIN = 100  # the changes answered again in full (the harmful first): what an admin reads


@dataclass(frozen=True)
class Asked:
    question: str
    history: list
    origin: str  # "stored" or the labelled set's file name
    in_scope: bool | None = None  # a labelled question's expectation; None for a stored one
    answer: str = ""  # the answer a stored question got (masked, as stored)


@dataclass(frozen=True)
class Outcome:
    mode: str
    top: str  # the id of the passage ranked first
    faq: str  # the curated entry given verbatim, or ""


@dataclass
class Change:
    asked: Asked
    before: Outcome
    after: Outcome
    before_answer: str | None = None  # the answer given (stored) or the live version's; None: not answered again
    after_answer: str | None = None  # the changed version's answer

    @property
    def kind(self) -> str:
        if (self.before.mode == "abstain") != (self.after.mode == "abstain"):
            return "abstain → answer" if self.before.mode == "abstain" else "answer → abstain"
        if self.before.faq != self.after.faq:
            return "another curated answer"
        return "another source"

    @property
    def harmful(self) -> bool:
        return (self.asked.in_scope is True and self.after.mode == "abstain" and self.before.mode != "abstain") or (
            self.asked.in_scope is False and self.after.mode != "abstain" and self.before.mode == "abstain")


def stored_questions(store, days: int = 30, now: datetime | None = None) -> list[Asked]:
    """The customers' questions of the last `days` days, each with its conversation before it."""
    since = (now or datetime.now(UTC).replace(tzinfo=None)) - timedelta(days=days)
    messages, _ = store.gap_messages(since)
    asked, history, conversation, waiting = [], [], None, None
    for m in messages:
        if m.conversation_id != conversation:
            history, conversation, waiting = [], m.conversation_id, None
        if m.role == "user":
            waiting = {"question": m.content, "history": list(history), "origin": "stored"} if m.created >= since and not asks_for_a_person(m.content) else None
            if waiting is not None:
                asked.append(waiting)
        elif m.role == "assistant" and m.mode != "handoff" and waiting is not None:
            waiting["answer"], waiting = m.content, None
        if m.role in ("user", "assistant") and m.mode != "handoff":
            history.append({"role": m.role, "content": m.content})
    return [Asked(**a) for a in asked]


def labelled_questions(folder: Path) -> list[Asked]:
    """Every query of the labelled sets in `folder` (`*.jsonl`, `../shared/eval` format: a query
    with gold passages is in scope, one without is not)."""
    from chatbot.evaluation import load_queries

    asked = []
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        asked += [Asked(q.question, q.history, path.name, q.in_scope) for q in load_queries([path])]
    return asked


def _outcome(retriever: Retriever, thresholds, asked: Asked) -> Outcome:
    retrieval = retriever.retrieve(asked.question, asked.history, enough=thresholds.answer)
    mode = decide(retrieval, thresholds)
    top = retrieval.passages[0].chunk.metadata.get("id", "") if retrieval.passages and mode != "abstain" else ""
    faq = str(retrieval.faq.chunk.metadata.get("id", "")) if mode == "faq" and retrieval.faq is not None else ""
    return Outcome(mode, top, faq)


def replay(manager, shadow, asked: list[Asked], answers: int = ANSWERED_AGAIN) -> dict:
    """Each of `asked` decided on the live version (`manager`'s) and on `shadow` (a
    `KnowledgeIndex` not live): the changes, the harmful ones first, the first `answers` of them
    answered again on both (`Change.before_answer`, `Change.after_answer`), and the time each
    part took."""
    from chatbot.dialogue import DialogueManager

    started = time.perf_counter()
    live = manager.retriever
    other = Retriever(shadow, live.embedder, manager.settings.retrieval, live.turns)
    live_thresholds = manager.thresholds(live)
    other_thresholds = resolve(manager.settings.retrieval, shadow.manifest.get("calibration"))
    changes = []
    for a in asked:
        before, after = _outcome(live, live_thresholds, a), _outcome(other, other_thresholds, a)
        if before != after:
            changes.append(Change(a, before, after))
    changes.sort(key=lambda c: (not c.harmful, c.kind))
    decided = time.perf_counter()
    changed = DialogueManager(manager.settings, other, manager.model, manager.prompts)
    for change in changes[:answers]:
        change.before_answer = change.asked.answer or _answer(manager, change.asked)
        change.after_answer = _answer(changed, change.asked)
    return {"asked": len(asked), "labelled": sum(a.in_scope is not None for a in asked), "changes": changes,
            "harmful": sum(c.harmful for c in changes), "answered_again": min(answers, len(changes)),
            "seconds": round(time.perf_counter() - started, 2), "answer_seconds": round(time.perf_counter() - decided, 2)}


def _answer(manager, asked: Asked) -> str:
    """`asked` answered whole by `manager` (its text as the customer would see it)."""
    from chatbot.errors import UserError

    try:
        return manager.respond(asked.question, asked.history).finish().text
    except UserError as e:  # a labelled question over the length limit, say
        return str(e)


def lines(result: dict) -> list[str]:
    """The replay as text: a summary, then each change (harmful ones marked)."""
    out = [f"replayed {result['asked']} questions ({result['labelled']} labelled) in {result['seconds']:.1f} s: "
           f"{len(result['changes'])} would change, {result['harmful']} for the worse on a labelled set; "
           f"{result['answered_again']} answered again in {result['answer_seconds']:.1f} s of it"]
    for c in result["changes"]:
        mark = "HARMFUL " if c.harmful else ""
        out.append(f"{mark}{c.kind}: {c.asked.question[:120]} [{c.asked.origin}] "
                   f"({c.before.mode} {c.before.faq or c.before.top} → {c.after.mode} {c.after.faq or c.after.top})")
        if c.after_answer is not None:
            out.append(f"    was: {_one_line(c.before_answer)}")
            out.append(f"    now: {_one_line(c.after_answer)}")
    return out


def markdown(result: dict, escape) -> list[str]:
    """The replay as Markdown lines for the admin page (`escape`: its text escaper): a summary,
    then each change shown (at most `ANSWERED_AGAIN`), the harmful ones marked, with the answer
    it got and the one it would get."""
    lines = [f"**Tried, not published.** {result['asked']} questions replayed ({result['labelled']} labelled) in {result['seconds']:.1f} s: "
             f"{len(result['changes'])} would change" + (f", **{result['harmful']} for the worse on a labelled set**." if result["harmful"] else ", none for the worse.")]
    for c in result["changes"][:ANSWERED_AGAIN]:
        lines.append(f"- {'**⚠ worse:** ' if c.harmful else ''}{c.kind}: {escape(c.asked.question[:200])} ({escape(c.asked.origin)})")
        if c.after_answer is not None:
            lines.append(f"  - was: {escape(_one_line(c.before_answer, 400))}")
            lines.append(f"  - **would be:** {escape(_one_line(c.after_answer, 400))}")
    return lines


def _one_line(text: str | None, limit: int = 200) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
