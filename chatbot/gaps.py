"""The knowledge gaps: what customers asked that Kefu could not answer, grouped into topics.

Signals, per stored customer question (the masked text the store keeps), read from the store:
- `off_topic_abstain` / `near_miss_abstain`: the turn was refused. A near miss is a question that,
  scored again on the live knowledge (`calibration.turn_topic`), lies nearer the calibrated
  threshold than the off-topic probes' lower quartile (`Thresholds.floor`): passages near it, but
  under the threshold. A request to act that was refused counts with the abstains.
- `thumbs_down`: its answer got a thumbs-down, with the customer's reason where one was given.
- `handoff`: the customer was handed to a person after it, with the person's first reply once there
  is one (a message asking for a person is not itself the gap: the question before it is).
- `repeat`: answered, and the same customer asked again within `REPEAT_WINDOW` with the same passage
  ranked first: the answer did not settle it.

Topics (`topics`): each language's gap questions clustered on the embeddings the chat already
makes (scikit-learn's HDBSCAN: no number of topics to choose, and a question like no other is left
out as noise rather than forced into a topic); each labelled by its most telling words (a class
TF-IDF: frequent in the topic, rare among the other gaps) and the three questions nearest its
centre; ranked by count × recency × handoffs (`Topic.score`). A topic keeps its id from one run
to the next: a new cluster takes the id of the stored centroid it is mutually nearest to, where
that centroid is as near as the cluster's own questions are to its centre (`match`).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from chatbot.calibration import turn_topic
from chatbot.embeddings import embed_queries
from chatbot.handoff import asks_for_a_person
from chatbot.language import detect_language
from chatbot.lexical import surface_words

REPEAT_WINDOW = timedelta(minutes=10)
HALF_LIFE_DAYS = 7.0  # a gap question's weight in its topic's rank halves every week
MIN_TOPIC = 5  # questions that make a topic: five customers asking one thing is worth an FAQ entry
EXAMPLES = 3
LABEL_WORDS = 4
ROUNDING = 1e-3  # a stored centroid's six decimals: a topic of one question asked alike (spread 1.0) still matches its own
SIGNALS = ("off_topic_abstain", "near_miss_abstain", "thumbs_down", "handoff", "repeat")


@dataclass
class Gap:
    """A customer question that was not answered well, with why (`signals`: name → detail)."""

    message_id: int
    conversation_id: str
    question: str
    created: datetime
    history: list[dict]
    signals: dict[str, str] = field(default_factory=dict)
    lang: str = ""
    vector: np.ndarray | None = field(default=None, repr=False)
    # scored again on the live knowledge: how much it is about it (`calibration.turn_topic`) and the
    # language's threshold for an answer
    topic: float | None = None
    threshold: float | None = None


@dataclass
class Topic:
    id: int
    lang: str
    label: list[str]
    examples: list[str]
    gaps: list[Gap] = field(repr=False)
    score: float
    first_seen: datetime
    last_seen: datetime
    centre: np.ndarray | None = field(default=None, repr=False)  # the unit mean of its questions' vectors
    spread: float = 1.0  # how near its questions are to the centre, on average (cosine)

    @property
    def signals(self) -> dict[str, int]:
        return dict(Counter(s for g in self.gaps for s in g.signals))

    def as_dict(self) -> dict:
        return {"id": self.id, "lang": self.lang, "label": self.label, "examples": self.examples, "count": len(self.gaps),
                "signals": self.signals, "score": round(self.score, 3), "first_seen": self.first_seen.isoformat(timespec="seconds"),
                "last_seen": self.last_seen.isoformat(timespec="seconds"), "message_ids": [g.message_id for g in self.gaps],
                "questions": [{"message_id": g.message_id, "signals": g.signals, "topic": g.topic, "threshold": g.threshold} for g in self.gaps]}


def find_gaps(messages: Iterable, thumbs_down: dict[int, str]) -> tuple[list[Gap], list[tuple[Gap, Gap]]]:
    """The gap questions among stored `messages` (`Message` rows, ordered by conversation, then
    id), with every signal but the abstains' type and `repeat` (`score_gaps` adds them), and the
    pairs that may be a repeat: an answered question and the same customer's next one within
    `REPEAT_WINDOW`. `thumbs_down`: the answers' message ids with a thumbs-down → the reason."""
    gaps: dict[int, Gap] = {}
    pairs: list[tuple[Gap, Gap]] = []
    by_conversation: dict[str, list] = {}
    for m in messages:
        by_conversation.setdefault(m.conversation_id, []).append(m)
    for conversation_id, rows in by_conversation.items():
        history: list[dict] = []
        asked = answered = None  # the customer's last question (not a request for a person); the last one answered
        waiting: list[Gap] = []  # handed off, before the person's first reply
        for m in rows:
            if m.role == "user":
                if not asks_for_a_person(m.content):
                    asked = Gap(m.id, conversation_id, m.content, m.created, list(history), lang=m.lang or "")
                    if answered is not None and asked.created - answered.created <= REPEAT_WINDOW:
                        pairs.append((answered, asked))
                    answered = None
                history.append({"role": "user", "content": m.content})
            elif m.role == "agent":
                for gap in waiting:
                    gap.signals["handoff"] = m.content
                waiting = []
            elif asked is not None:
                if m.mode == "handoff":
                    waiting.append(gaps.setdefault(asked.message_id, asked))
                    asked.signals.setdefault("handoff", "")
                elif m.mode == "abstain":
                    gaps.setdefault(asked.message_id, asked).signals["abstain"] = ""
                elif m.mode in ("faq", "generate"):
                    answered = asked
                if m.id in thumbs_down:
                    gaps.setdefault(asked.message_id, asked).signals["thumbs_down"] = thumbs_down[m.id]
                history.append({"role": "assistant", "content": m.content})
    return list(gaps.values()), pairs


def score_gaps(gaps: list[Gap], pairs: list[tuple[Gap, Gap]], retriever, thresholds) -> list[Gap]:
    """The gaps scored again on the live knowledge: each one's language and vector (as the chat
    embeds it), an abstain typed as a near miss or off topic; and of `pairs`, the answered
    questions asked again: the next question as near to it as a curated FAQ question must be to
    match (`thresholds.faq`), which become gaps with `repeat`. Returns every gap."""
    if pairs:
        texts = [g.question.lower() for pair in pairs for g in pair]
        vectors = np.asarray(embed_queries(retriever.embedder, texts), dtype=np.float32)
        units = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        known = {g.message_id: g for g in gaps}
        for n, (first, _again) in enumerate(pairs):
            if float(units[2 * n] @ units[2 * n + 1]) >= thresholds.faq:
                known.setdefault(first.message_id, first).signals["repeat"] = ""
        gaps = list(known.values())
    for gap in gaps:
        retrieval = retriever.retrieve(gap.question, gap.history, enough=thresholds.answer)
        gap.lang, gap.vector = retrieval.lang, retrieval.vector
        floor = thresholds.floor.get(gap.lang)
        gap.topic, gap.threshold = round(turn_topic(retrieval, -1.0 if floor is None else floor), 4), thresholds.answer_for(gap.lang)
        if gap.signals.pop("abstain", None) is not None:
            near = floor is not None and gap.topic >= (gap.threshold + floor) / 2
            gap.signals["near_miss_abstain" if near else "off_topic_abstain"] = ""
    return sorted((g for g in gaps if g.vector is not None), key=lambda g: g.message_id)


def cluster(vectors: np.ndarray, background: np.ndarray | None = None, min_topic: int = MIN_TOPIC) -> np.ndarray:
    """A topic number per row (-1: in none), by HDBSCAN over the unit rows: a topic is `min_topic`
    questions or more, each with as many near it (a dense core: one-off questions stay noise).
    The rows are clustered among `background` rows (the shipped off-topic probes of the language:
    questions of many domains): alone, the questions of a single topic among a few one-offs are one
    cluster that never splits, which HDBSCAN does not report. A topic counts only the rows given,
    and only with `min_topic` of them (a gap or two among the weather probes is no topic)."""
    rows = vectors if background is None or not len(background) else np.concatenate([vectors, background])
    if len(rows) < min_topic:
        return np.full(len(vectors), -1)
    from sklearn.cluster import HDBSCAN

    units = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    labels = HDBSCAN(min_cluster_size=min_topic, min_samples=min_topic, copy=True).fit_predict(units)[: len(vectors)]
    counts = Counter(labels.tolist())
    return np.asarray([n if n >= 0 and counts[n] >= min_topic else -1 for n in labels.tolist()])


def match(centroids: np.ndarray, spreads: np.ndarray, stored: np.ndarray) -> list[int | None]:
    """For each new centroid (unit rows), the row of the stored centroid it takes its id from: the
    two are each other's nearest, and nearer than the new cluster's questions are on average to its
    own centre (`spreads`); else None."""
    if not len(stored) or not len(centroids):
        return [None] * len(centroids)
    sims = centroids @ stored.T
    best_stored, best_new = sims.argmax(axis=1), sims.argmax(axis=0)
    return [int(s) if best_new[s] == n and sims[n, s] >= spreads[n] - ROUNDING else None for n, s in enumerate(best_stored)]


def _unit(row: np.ndarray) -> np.ndarray:
    return row / max(float(np.linalg.norm(row)), 1e-12)


def label(texts: list[str], words: Counter, clusters: int) -> list[str]:
    """The topic's most telling words: frequent among its questions, rare among all the topics'
    (class TF-IDF: `words` counts the questions of every topic that have each word)."""
    counts = Counter(w for t in texts for w in set(surface_words(t)))
    total = sum(words.values()) / max(clusters, 1)
    weight = {w: (c / len(texts)) * math.log(1 + total / words[w]) for w, c in counts.items() if c > 1 or len(texts) < 3}
    return [w for w, _ in sorted(weight.items(), key=lambda kv: (-kv[1], kv[0]))[:LABEL_WORDS]]


def topics(gaps: list[Gap], stored: list[dict], now: datetime, background: dict[str, np.ndarray] | None = None) -> tuple[list[Topic], list[dict]]:
    """The gaps' topics, best ranked first, and the stored topics to keep (`stored`: rows of
    `{id, lang, centroid, first_seen}`; those matched get the new centroid; new ones have id None
    until stored). `background`: per language, rows to cluster the gaps among (`cluster`)."""
    found: list[Topic] = []
    keep: list[dict] = []
    for lang in sorted({g.lang for g in gaps}):
        mine = [g for g in gaps if g.lang == lang]
        vectors = np.stack([g.vector for g in mine]).astype(np.float32)
        labels = cluster(vectors, (background or {}).get(lang))
        groups = [[g for g, n in zip(mine, labels) if n == k] for k in sorted(set(labels) - {-1})]
        if not groups:
            continue
        units = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        centroids = np.stack([_unit(units[labels == k].mean(axis=0)) for k in sorted(set(labels) - {-1})])
        spreads = np.asarray([float((units[labels == k] @ c).mean()) for k, c in zip(sorted(set(labels) - {-1}), centroids)])
        old = [s for s in stored if s["lang"] == lang and len(s["centroid"]) == units.shape[1]]  # another embedder's: not comparable
        matched = match(centroids, spreads, np.asarray([s["centroid"] for s in old], dtype=np.float32).reshape(len(old), units.shape[1]))
        words = Counter(w for group in groups for g in group for w in set(surface_words(g.question)))
        for group, centre, row in zip(groups, centroids, matched):
            previous = old[row] if row is not None else None
            first_seen = min([g.created for g in group] + ([previous["first_seen"]] if previous else []))
            row = {id(g): n for n, g in enumerate(mine)}
            nearest = list({g.question: g for g in sorted(group, key=lambda g: float(units[row[id(g)]] @ centre))}.values())[::-1]
            weight = sum(0.5 ** (max((now - g.created).total_seconds(), 0) / 86400 / HALF_LIFE_DAYS) for g in group)
            handoffs = sum("handoff" in g.signals for g in group)
            found.append(Topic(previous["id"] if previous else 0, lang, label([g.question for g in group], words, len(groups)),
                               [g.question for g in nearest[:EXAMPLES]], group, weight * (1 + handoffs), first_seen, max(g.created for g in group),
                               centre, float((units[[row[id(g)] for g in group]] @ centre).mean())))
            keep.append({"id": previous["id"] if previous else None, "lang": lang, "centroid": [round(float(x), 6) for x in centre], "first_seen": first_seen, "topic": found[-1]})
    found.sort(key=lambda t: -t.score)
    return found, keep


def gap_topics(store, retriever, thresholds, days: int = 30, now: datetime | None = None) -> tuple[list[Topic], list[Gap]]:
    """The topics of the gaps of the last `days` days, best ranked first, with their ids (stored
    now: `Store.save_gap_topics`), and every gap found (those in no topic too)."""
    now = now or datetime.now(UTC).replace(tzinfo=None)
    since = now - timedelta(days=days)
    messages, down = store.gap_messages(since)
    gaps, pairs = find_gaps(messages, down)
    gaps = score_gaps([g for g in gaps if g.created >= since], [p for p in pairs if p[0].created >= since], retriever, thresholds)
    probes = getattr(retriever.turns, "probes", None)
    background = {lang: np.concatenate(probes.units, axis=1)[probes.langs == lang] for lang in ("en", "zh")} if probes is not None else None
    found, keep = topics(gaps, store.gap_topics(), now, background)
    for row, topic_id in zip(keep, store.save_gap_topics(keep)):
        row["topic"].id = topic_id
    store.save_gap_members(members(found, gaps, messages, since, retriever.embedder), since)
    return found, gaps


def members(found: list[Topic], gaps: list[Gap], messages: Iterable, since: datetime, embedder) -> dict[int, tuple[str, int]]:
    """Each customer question since `since` that belongs to a topic of `found` (message id →
    (conversation id, topic id)): a topic's own gap questions, and any other question (answered,
    so no gap) of its language whose vector is nearest that topic's centre and as near as the
    topic's own questions are on average (`Topic.spread`): the questions a topic's metrics count,
    those answered once it is closed among them."""
    out = {g.message_id: (g.conversation_id, t.id) for t in found for g in t.gaps}
    gapped = {g.message_id for g in gaps}
    others = [m for m in messages if m.role == "user" and m.created >= since and m.id not in gapped and not asks_for_a_person(m.content)]
    placed = [t for t in found if t.centre is not None]
    if not others or not placed:
        return out
    vectors = np.asarray(embed_queries(embedder, [m.content.lower() for m in others]), dtype=np.float32)  # as the chat embeds a question
    units = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sims = units @ np.stack([t.centre for t in placed]).T
    langs = np.asarray([t.lang for t in placed])
    for m, row in zip(others, sims):
        row = np.where(langs == (m.lang or detect_language(m.content)), row, -np.inf)
        best = int(np.argmax(row))
        if row[best] >= placed[best].spread:
            out[m.id] = (m.conversation_id, placed[best].id)
    return out


APPROVED_DOCUMENT = "gap-answers.csv"  # the approved drafts: one knowledge document, versioned and removable like any other


def write_draft(topic: Topic, manager, masker) -> dict:
    """A draft FAQ entry for `topic` (the fields of `store.GapDraft`). Its question is the topic's
    question nearest its centre. Its answer is the reply the person gave most often where the
    topic's questions were handed off, citing those conversations; otherwise the LM's one sentence
    from the passages nearest the question (`manager`: the chat's own prompt), marked as needing a
    source, since the knowledge did not answer these questions; or empty when the LM finds nothing
    there. A draft whose question is as near an existing FAQ entry as a curated match is an edit
    of that entry, not a second one beside it: it keeps the entry's question (`near_entry`) and
    its answer stands in for the entry's once approved (the `replaces` column of
    `APPROVED_DOCUMENT`, `kb.replaced_questions`); without a person's reply it starts from the
    entry's own answer, marked as needing a source. Personal data is masked (`masker`): a person's
    reply may hold some."""
    from chatbot.dialogue import NOT_STATED
    from chatbot.evidence import case_first, select

    question = topic.examples[0]
    thresholds = manager.thresholds()
    retrieval = manager.retriever.retrieve(question, [], enough=thresholds.answer)
    faq = retrieval.faq
    entry = faq.chunk.metadata if faq is not None and faq.score >= thresholds.faq else None
    if entry is not None:  # an edit of that entry: its question kept, its answer to be rewritten
        question = str(entry["question"])
    replies = [(g.conversation_id, g.signals["handoff"]) for g in topic.gaps if g.signals.get("handoff")]
    if replies:
        answer = Counter(reply for _, reply in replies).most_common(1)[0][0]
        cites, needs_source = sorted({c for c, reply in replies if reply == answer}), False
    elif entry is not None:  # the entry's answer did not settle these questions: the reviewer rewrites it
        answer, cites, needs_source = str(entry["answer"]), [], True
    else:
        answer, cites, needs_source = "", [], True
        passages = case_first(retrieval.passages, question)[: manager.settings.retrieval.passages_in_prompt]
        evidence = select(manager.retriever.embedder, retrieval.vector, passages, retrieval.lang, 3, question=question) if retrieval.vector is not None else []
        if evidence:
            written = "".join(manager.model.stream(manager.build_messages(question, [e.text for e in evidence], [], retrieval.lang))).strip()
            answer = "" if any(n in written.lower() for n in NOT_STATED) else written
    return {"topic_id": topic.id, "lang": topic.lang, "question": masker.mask(question), "answer": masker.mask(answer), "cites": cites,
            "needs_source": needs_source, "near_entry": question if entry is not None else ""}


def edited_question(draft) -> str:
    """The question of the FAQ entry `draft` edits, or "" (a draft stored before edits named it
    as "<chunk id>: <question>")."""
    return re.sub(r"^\S+#\d+: ", "", draft.near_entry or "")


def approved_csv(drafts) -> bytes:
    """The approved drafts as the knowledge document `APPROVED_DOCUMENT` (question, answer)."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["question", "answer", "replaces"])
    for draft in drafts:
        writer.writerow([draft.question.strip(), draft.answer.strip(), edited_question(draft)])
    return out.getvalue().encode("utf-8")


def try_approval(store, kb, masker, draft_id: int, question: str | None = None, answer: str | None = None):
    """The version that approving the draft (with these edits) would publish, not made live
    (`KnowledgeBase.try_change`): for a replay before the approval (`chatbot/replay.py`)."""
    from types import SimpleNamespace

    from chatbot.errors import UserError
    from chatbot.kb import Upload

    draft = store.gap_draft(draft_id)
    candidate = SimpleNamespace(question=masker.mask(question.strip()) if question and question.strip() else draft.question,
                                answer=masker.mask(answer.strip()) if answer and answer.strip() else draft.answer, near_entry=draft.near_entry)
    if not candidate.answer.strip():
        raise UserError(f"draft {draft_id} has no answer yet: write one first")
    entries = [d for d in store.gap_drafts("approved") if d.id != draft_id] + [candidate]
    return kb.try_change([Upload(APPROVED_DOCUMENT, approved_csv(entries))])


def publish(store, kb):
    """Every approved draft, as one document through the normal knowledge-base path (a new version;
    the previous `APPROVED_DOCUMENT` replaced, or removed when none is left). The `kb.Report`, or
    None when there was nothing to do."""
    from chatbot.kb import Upload

    approved = store.gap_drafts("approved")
    if approved:
        return kb.add([Upload(APPROVED_DOCUMENT, approved_csv(approved))])
    if any(d["name"] == APPROVED_DOCUMENT for d in kb.documents()):
        return kb.remove(APPROVED_DOCUMENT)
    return None


def approve(store, kb, masker, draft_id: int, reviewer: str, question: str | None = None, answer: str | None = None):
    """Approve a draft, with the reviewer's edits (masked too), and publish every approved draft
    (`publish`); a draft without an answer cannot be approved."""
    from chatbot.errors import UserError

    draft = store.gap_draft(draft_id)
    question = masker.mask(question.strip()) if question and question.strip() else draft.question
    answer = masker.mask(answer.strip()) if answer and answer.strip() else draft.answer
    if not answer.strip():
        raise UserError(f"draft {draft_id} has no answer yet (the knowledge does not say it): write one (--answer, or the Answer box) and approve again")
    store.review_gap_draft(draft_id, "approved", reviewer, question=question, answer=answer)
    return publish(store, kb)


def dismiss(store, kb, draft_id: int, reviewer: str, reason: str):
    """Dismiss a draft with the reviewer's reason (required); one that was approved leaves the
    published document (`publish`)."""
    from chatbot.errors import UserError

    if not reason.strip():
        raise UserError("say why the draft is dismissed (--reason, or the Reason box): the next reviewer reads it")
    was = store.gap_draft(draft_id).status
    store.review_gap_draft(draft_id, "dismissed", reviewer, reason=reason.strip())
    return publish(store, kb) if was == "approved" else None
