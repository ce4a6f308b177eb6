"""A knowledge change tried before it goes live: the stored questions of the last days and every
labelled set in `<data_dir>/evalsets/` asked of the live version and of the changed one (a shadow:
`KnowledgeBase.try_change`), and what would change.

Each question is decided by the chat's own retrieval and decision code on both versions, without
the LM: the decision, the sources and the curated answer are what a change moves, and the answer's
sentence follows from them. So a replay of 1,000 questions is two retrievals each, not 1,000
generations. A change is one of:
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


@dataclass(frozen=True)
class Asked:
    question: str
    history: list
    origin: str  # "stored" or the labelled set's file name
    in_scope: bool | None = None  # a labelled question's expectation; None for a stored one


@dataclass(frozen=True)
class Outcome:
    mode: str
    top: str  # the id of the passage ranked first
    faq: str  # the curated entry given verbatim, or ""


@dataclass(frozen=True)
class Change:
    asked: Asked
    before: Outcome
    after: Outcome

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
    asked, history, conversation = [], [], None
    for m in messages:
        if m.conversation_id != conversation:
            history, conversation = [], m.conversation_id
        if m.role == "user" and m.created >= since and not asks_for_a_person(m.content):
            asked.append(Asked(m.content, list(history), "stored"))
        if m.role in ("user", "assistant") and m.mode != "handoff":
            history.append({"role": m.role, "content": m.content})
    return asked


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


def replay(manager, shadow, asked: list[Asked]) -> dict:
    """Each of `asked` decided on the live version (`manager`'s) and on `shadow` (a
    `KnowledgeIndex` not live): the changes, the harmful ones first, and the time it took."""
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
    return {"asked": len(asked), "labelled": sum(a.in_scope is not None for a in asked), "changes": changes,
            "harmful": sum(c.harmful for c in changes), "seconds": round(time.perf_counter() - started, 2)}


def lines(result: dict) -> list[str]:
    """The replay as text: a summary, then each change (harmful ones marked)."""
    out = [f"replayed {result['asked']} questions ({result['labelled']} labelled) in {result['seconds']:.1f} s: "
           f"{len(result['changes'])} would change, {result['harmful']} for the worse on a labelled set"]
    for c in result["changes"]:
        mark = "HARMFUL " if c.harmful else ""
        out.append(f"{mark}{c.kind}: {c.asked.question[:120]} [{c.asked.origin}] "
                   f"({c.before.mode} {c.before.faq or c.before.top} → {c.after.mode} {c.after.faq or c.after.top})")
    return out
